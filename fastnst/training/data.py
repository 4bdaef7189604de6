"""Training data: any folder of photos (COCO train2014 by default), or generated images.

Training crops are shuffled random crops (``core/crops.py``, the same the style fitter draws); a few fixed
held-out images, centre-cropped, serve validation (losses and the sample grid in TensorBoard).
"""

from __future__ import annotations

import logging
import multiprocessing
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fastnst.core.crops import centre_crop, random_crop
from fastnst.core.errors import FastNSTError
from fastnst.core.images import find_images, open_image, to_tensor

log = logging.getLogger(__name__)


class ImageFiles(Dataset):
    """Images from a list of files. An unreadable file is logged, counted in ``skipped`` and
    replaced by the next readable one, so one bad JPEG never stops a run hours in."""

    def __init__(self, files: list[Path], image_size: int, train: bool) -> None:
        self.files, self.image_size, self.train = files, image_size, train
        self.skipped = multiprocessing.Value("i", 0)  # shared with worker processes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        for attempt in range(len(self.files)):
            path = self.files[(index + attempt) % len(self.files)]
            try:
                # to_tensor first: it scales 16-bit images by their own range (Pillow's RGB clips them).
                return _crop(to_tensor(open_image(path))[0], self.image_size, self.train)
            except (FastNSTError, OSError) as err:
                with self.skipped.get_lock():
                    self.skipped.value += 1
                log.warning("skipping unreadable training image: %s", err)
        raise FastNSTError("no readable image left in the training data")


class CachedImages(Dataset):
    """Random crops from a pre-resized uint8 array (``scripts/data/prepare_data.py``), memory-mapped:
    no JPEG decoding while training, and the page cache is shared by all workers."""

    def __init__(self, path: Path, indices: range, image_size: int, train: bool) -> None:
        self.path, self.indices, self.image_size, self.train = path, indices, image_size, train
        self.array: np.ndarray | None = None  # opened lazily in each worker process
        self.skipped = multiprocessing.Value("i", 0)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.array is None:
            self.array = np.load(self.path, mmap_mode="r")
        # A copy: the memmap is read-only, and torch wants writable memory.
        img = torch.from_numpy(np.array(self.array[self.indices[index]])).permute(2, 0, 1)
        return _crop(img.float() / 255, self.image_size, self.train)


def _crop(image: torch.Tensor, size: int, train: bool) -> torch.Tensor:
    return random_crop(image, size) if train else centre_crop(image, size)


class SyntheticImages(Dataset):
    """Deterministic generated photos-ish images: smooth colour fields, shapes and grain.
    For smoke runs, tests and benchmarks; a network trained on them will not generalise."""

    def __init__(self, length: int, image_size: int, seed: int = 0) -> None:
        self.length, self.image_size, self.seed = length, image_size, seed
        self.skipped = multiprocessing.Value("i", 0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        s = self.image_size
        coarse = torch.rand(1, 3, 4, 4, generator=g)
        img = F.interpolate(coarse, size=(s, s), mode="bicubic", align_corners=False)[0]
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        for _ in range(int(torch.randint(2, 6, (1,), generator=g))):
            cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([s, s, s / 3])).tolist()
            mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < (r + 2) ** 2
            img[:, mask] = torch.rand(3, 1, generator=g)
        img += 0.03 * torch.randn(3, s, s, generator=g)
        return img.clamp(0, 1)


class StyleDataModule(L.LightningDataModule):
    """``root``: a folder searched recursively for jpg/png/webp/bmp/tiff. ``synthetic``: generate
    ``synthetic_length`` images instead. ``num_val`` images are held out for validation."""

    def __init__(self, root: str | None = None, image_size: int = 256, batch_size: int = 4,
                 num_workers: int = 4, num_val: int = 4, synthetic: bool = False,
                 synthetic_length: int = 1000, seed: int = 0, cache: str | None = None) -> None:
        super().__init__()
        self.cache = cache
        self.root, self.image_size, self.batch_size = root, image_size, batch_size
        self.num_workers, self.num_val, self.synthetic = num_workers, num_val, synthetic
        self.synthetic_length, self.seed = synthetic_length, seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.synthetic:
            self.train_set = SyntheticImages(self.synthetic_length, self.image_size, self.seed)
            self.val_set = SyntheticImages(self.num_val, self.image_size, self.seed + 1)
            return
        if self.cache:
            self._setup_cache(Path(self.cache).expanduser())
            return
        if self.root is None or not str(self.root).strip():  # `data.root=` would be "." and train on whatever is here
            raise FastNSTError("root is empty; point it (or $FASTNST_DATA) at a folder of photos", param="root")
        root = Path(str(self.root)).expanduser()
        if not root.is_dir():
            raise FastNSTError(f"root {root} is not a folder; point it (or $FASTNST_DATA) at your photos, "
                               "run scripts/data/download_coco.py, or train on generated images", param="root")
        files = find_images(root)
        if not files:
            raise FastNSTError(f"root {root} holds no jpg/png/webp/bmp/tiff image", param="root")
        probe = random.Random(self.seed).sample(files, min(len(files), 16))
        if not any(_readable(p) for p in probe):
            raise FastNSTError(f"root {root}: none of {len(probe)} sampled images could be read", param="root")
        # Validation images are the first readable ones: a corrupt file there would stop every validation.
        num_val = min(self.num_val, max(len(files) - 1, 0))
        val_files: list[Path] = []
        for path in files:
            if len(val_files) >= max(num_val, 1):
                break
            if _readable(path):
                val_files.append(path)
        held = set(val_files) if num_val else set()
        self.val_set = ImageFiles(val_files, self.image_size, train=False)
        self.train_set = ImageFiles([f for f in files if f not in held], self.image_size, train=True)
        log.info("training on %d images from %s (%d held out)", len(files) - len(held), root, len(held))

    def _setup_cache(self, path: Path) -> None:
        try:
            shape = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError) as err:
            raise FastNSTError(f"cache {path} is not a prepared array ({err}); "
                               "make one with scripts/data/prepare_data.py", param="cache") from None
        if len(shape) != 4 or shape[-1] != 3 or min(shape[1:3]) < self.image_size or shape[0] < 2:
            raise FastNSTError(f"cache {path} holds {shape}, not N x S x S x 3 with S >= the image size "
                               f"{self.image_size}", param="cache")
        num_val = min(self.num_val, shape[0] - 1)
        self.val_set = CachedImages(path, range(num_val), self.image_size, train=False)
        self.train_set = CachedImages(path, range(num_val, shape[0]), self.image_size, train=True)

    @property
    def skipped(self) -> int:
        """Unreadable training files met so far (summed over workers)."""
        return self.train_set.skipped.value if self.train_set is not None else 0

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=len(self.val_set), shuffle=False, num_workers=0)


def _readable(path: Path) -> bool:
    try:
        open_image(path)
        return True
    except FastNSTError:
        return False
