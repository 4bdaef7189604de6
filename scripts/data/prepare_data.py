"""Decode and resize a photo folder once into a memory-mapped uint8 array, so that training does
not spend its time in JPEG decoding:

    python -m scripts.data.prepare_data data/coco/train2014 data/coco256.npy --size 288
    python train.py data.cache=data/coco256.npy ...

Each photo is resized so its short side is ``--size`` and centre-cropped to a square (training then
takes random crops of ``data.image_size`` from it). Unreadable files are skipped and counted.
The array is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fastnst.core.errors import FastNSTError
from fastnst.core.images import atomic_path, find_images, open_image, split_alpha


def square(img: Image.Image, size: int) -> np.ndarray:
    w, h = img.size
    f = size / min(w, h)
    img = img.resize((max(size, round(w * f)), max(size, round(h * f))), Image.Resampling.LANCZOS)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--size", type=int, default=288)
    args = parser.parse_args(argv)
    files = find_images(args.root)
    if not files:
        print(f"error: {args.root} holds no images", file=sys.stderr)
        return 2
    skipped = 0
    with atomic_path(args.output) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), args.size, args.size, 3))
        count = 0
        for path in tqdm(files, unit="image"):
            try:
                rgb, _ = split_alpha(open_image(path))
                array[count] = square(rgb.convert("RGB"), args.size)
                count += 1
            except FastNSTError:
                skipped += 1
        array.flush()
        del array
        if count < len(files):  # drop the rows of skipped files
            data = np.load(tmp, mmap_mode="r")[:count]
            trimmed = tmp.with_name(tmp.name + ".trim.npy")
            np.save(trimmed, data)
            trimmed.replace(tmp)
    print(f"{count} images of {args.size}x{args.size} in {args.output} ({skipped} unreadable skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
