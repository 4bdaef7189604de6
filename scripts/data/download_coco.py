"""Download and unpack COCO train2014 (~13 GB, 82,783 photos), the training set of Johnson et al.

    python -m scripts.data.download_coco [--dest data/coco]

Then train with `data.root=data/coco/train2014` (the default) or set $FASTNST_DATA.
The archive is downloaded to a temporary name and renamed when complete, so an interrupted
download is resumed from scratch rather than unpacked half-done.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

from tqdm import tqdm

from fastnst.core.download import download
from fastnst.core.errors import FastNSTError

URL = "http://images.cocodataset.org/zips/train2014.zip"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("data/coco"))
    parser.add_argument("--url", default=URL)
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    archive = args.dest / "train2014.zip"
    try:
        if not archive.exists():
            download(args.url, archive, timeout=60)
        with zipfile.ZipFile(archive) as zf:
            for member in tqdm(zf.infolist(), desc="unpacking", unit="file"):
                zf.extract(member, args.dest)
    except (FastNSTError, OSError, zipfile.BadZipFile) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(args.dest / "train2014")
    return 0


if __name__ == "__main__":
    sys.exit(main())
