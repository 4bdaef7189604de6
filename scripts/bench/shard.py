"""Throughput of sharded stylization against one process, measured in the same run:

    python -m scripts.bench.shard [--model starry_night] [--images 48] [--size 512] [--processes 1,2]

For each process count P, P `fastnst stylize FOLDER --shard k/P` processes run at once over the same
generated folder (each with cores/P threads), as P machines or GPUs would; prints images/s and the ratio
to P=1, and checks that every image was written exactly once. On one CPU the processes share its cores,
so this shows the mechanism and its overhead (start-up, threads), not the scaling of P real devices.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_photos(folder: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        coarse = rng.random((4, 4, 3)) * 255
        image = Image.fromarray(coarse.astype(np.uint8)).resize((size, size * 3 // 4), Image.Resampling.BICUBIC)
        image.save(folder / f"photo{i:04d}.jpg", quality=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="starry_night")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=512, help="width of the generated photos (px)")
    parser.add_argument("--processes", default="1,2")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        make_photos(photos, args.images, args.size)
        print(f"{args.images} photos of {args.size}x{args.size * 3 // 4}, model {args.model}, {cores} cores\n")
        print("| processes | threads each | wall s | images/s | ratio |")
        print("|---|---|---|---|---|")
        base = None
        for count in map(int, args.processes.split(",")):
            out = Path(tmp) / f"out{count}"
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // count))}
            start = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "-m", "fastnst.cli", "stylize", str(photos), "-o",
                                       str(out), "--model", args.model, "--device", "cpu", f"--shard={k}/{count}"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for k in range(count)]
            errors = [p.communicate()[1] for p in procs]
            wall = time.perf_counter() - start
            if any(p.returncode for p in procs):
                print("\n".join(errors), file=sys.stderr)
                return 1
            written = len(list(out.glob("*.jpg")))
            if written != args.images:
                print(f"{count} processes wrote {written} of {args.images} outputs", file=sys.stderr)
                return 1
            rate = args.images / wall
            base = base or rate
            print(f"| {count} | {max(1, cores // count)} | {wall:.1f} | {rate:.2f} | {rate / base:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
