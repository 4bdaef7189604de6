"""A contact sheet: held-out photos (columns) stylized by each model (rows), labelled.

    python -m scripts.demo.contact_sheet --models starry_night,great_wave \
        --photos ../shared/assets/content/chicago.jpg,... \
        --out docs/contact_sheet.jpg [--cell 256] [--row multi.safetensors@great_wave ...]

Models are files or starter names, one row each; the first row is the photos themselves. ``--row
MODEL@STYLE`` adds a row of one style or blend of a multi-style model (``m@a:0.5,b:0.5``). Photos are
stylized at --max-size and shown centre-cropped to square cells.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from fastnst.core.images import open_image
from fastnst.inference.stylizer import Stylizer

LABEL = 22


def cell(image: Image.Image, size: int) -> Image.Image:
    """Centre-cropped to a square cell, so rows line up whatever the photos' shapes."""
    return ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated model files or starter names")
    parser.add_argument("--row", action="append", default=[], help="MODEL@STYLE: one style or blend (repeatable)")
    parser.add_argument("--photos", required=True, help="comma-separated photo paths")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cell", type=int, default=256)
    parser.add_argument("--max-size", type=int, default=512, help="stylize each photo at this long side")
    args = parser.parse_args(argv)
    photos = [open_image(p) for p in args.photos.split(",")]
    models = [(m, None) for m in args.models.split(",") if m] + [tuple(r.split("@", 1)) for r in args.row]
    size = args.cell
    sheet = Image.new("RGB", (len(photos) * size, (len(models) + 1) * (size + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    rows = [("photo", photos)]
    loaded: dict[str, Stylizer] = {}
    for name, style in models:
        if name not in loaded:
            loaded[name] = Stylizer.from_file(name, device="cpu")
        stylizer = loaded[name]
        label = stylizer.style_label(style) if stylizer.multi_style else stylizer.style_name
        rows.append((label, [stylizer.stylize(p, max_size=args.max_size, style=style) for p in photos]))
        print(f"{name} {style or ''}: done", file=sys.stderr, flush=True)
    for r, (label, images) in enumerate(rows):
        top = r * (size + LABEL)
        draw.text((6, top + 5), label, fill="black")
        for c, image in enumerate(images):
            sheet.paste(cell(image, size), (c * size, top + LABEL))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=88)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
