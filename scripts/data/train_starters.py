"""Train the starter models that ship with fastnst, and pack them (fp16) into fastnst/assets/models.

    python -m scripts.data.train_starters --data ../shared/assets/train \
        --vgg-weights ../shared/assets/vgg/vgg16_standin.safetensors --steps 500 [--styles a,b] [--pack-only]

Each style is one `train.py` run (its own folder under --out, resumable: a finished run with the
same step count is reused, so a killed job picks up where it stopped). With the real ImageNet VGG
and COCO, retrain them as Johnson et al. did: `--vgg-weights imagenet --data data/coco/train2014
--steps 40000 --model johnson --image-size 256`. Every model records how it was made in its
metadata (`fastnst info`, `fastnst models`).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import torch

from fastnst.core.modelfile import STARTER_DIR, load_network, read_metadata, save_stylizer
from fastnst.training.config import starter_styles

ROOT = Path(__file__).resolve().parents[2]


def train(style: str, args: argparse.Namespace, description: str) -> Path:
    run_dir = args.out.resolve() / style
    done = run_dir / f"{style}.safetensors"
    if done.is_file() and read_metadata(done).steps == args.steps:
        return done
    resume = ["ckpt_path=last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
    if args.start_from and not resume:  # a fine-tune: every weight of the model there, `--steps` more
        resume = [f"init_weights={args.start_from.resolve() / f'{style}.safetensors'}"]
    cmd = [sys.executable, "train.py", f"style={style}", f"model={args.model}", f"data.root={args.data}",
           f"data.image_size={args.image_size}", f"data.batch_size={args.batch_size}",
           f"data.num_workers={args.workers}", f"loss.vgg_weights={args.vgg_weights}", "trainer=cpu",
           f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={min(250, args.steps)}",
           "trainer.enable_progress_bar=false", "checkpoint_every_n_steps=100", f"hydra.run.dir={run_dir}",
           f"description='{description}'", *resume, *args.overrides]
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{style}: training failed:\n{proc.stderr[-3000:]}")
    print(f"{style}: {args.steps} steps in {time.time() - start:.0f} s", flush=True)
    return done


def pack(style: str, trained: Path, vgg_name: str, folder: Path, signatures: torch.Tensor | None = None,
         **changes: object) -> Path:
    """fp16 weights (half the size; the network runs in fp32) under the package's starter folder;
    ``signatures``: a multi-style base's (core/signatures.py); ``changes``: metadata fields to set (a
    campaign's total steps and recipe)."""
    network, meta = load_network(trained)
    loss = {**meta.loss, "vgg_weights": vgg_name}  # a name, not this machine's path
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{style}.safetensors"
    save_stylizer(network, target, dataclasses.replace(meta, loss=loss, **changes), dtype=torch.float16,
                  signatures=signatures)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--vgg-weights", required=True)
    parser.add_argument("--styles", default=",".join(starter_styles()))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--model", default="johnson_small")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "starters")
    parser.add_argument("--pack-only", action="store_true", help="pack finished runs, train nothing")
    parser.add_argument("--data-label", help="how the model metadata names the data (default: the folder's name)")
    parser.add_argument("--pack-dir", type=Path, default=STARTER_DIR, help="where the fp16 models go")
    parser.add_argument("--start-from", type=Path, help="fine-tune: start each style from DIR/<style>.safetensors "
                        "(e.g. fastnst/assets/models with model.upsample=bilinear: the starters without hatching)")
    args, overrides = parser.parse_known_args(argv)
    args.overrides = [o for o in overrides if o != "--"]
    vgg_name = Path(args.vgg_weights).name if Path(args.vgg_weights).is_file() else args.vgg_weights
    n_photos = sum(1 for p in args.data.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    description = (f"{args.model}, {args.steps} steps of batch {args.batch_size} at {args.image_size} px "
                   f"on {n_photos} photos ({args.data_label or args.data.name}); loss network: {vgg_name}")
    for style in args.styles.split(","):
        run = args.out.resolve() / style / f"{style}.safetensors"
        changes: dict[str, object] = {}
        if args.start_from:  # the model's whole age and history, not only this run's
            before = read_metadata(args.start_from / f"{style}.safetensors")
            changes = {"steps": (before.steps or 0) + args.steps,
                       "description": f"{before.description}; then {description}, {' '.join(args.overrides)}"[:4096]}
        trained = run if args.pack_only else train(style, args, description)
        if trained.is_file():
            print(pack(style, trained, vgg_name, args.pack_dir, **changes), flush=True)


if __name__ == "__main__":
    main()
