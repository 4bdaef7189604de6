"""A Lightning callback for the multi-node tests, added from the command line as a user adds any
callback (``+callbacks.trace._target_=trace_batches.TraceBatches``): it records which images each
rank trains on, and can slow steps down so that a test can kill a node mid-run."""

import hashlib
import time
from pathlib import Path

import lightning as L
import torch


class TraceBatches(L.Callback):
    def __init__(self, folder: str, sleep: float = 0.0) -> None:
        self.folder, self.sleep = Path(folder), sleep

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: torch.Tensor,
                             batch_idx: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"rank{trainer.global_rank}.txt", "a") as f:
            for image in batch:
                digest = hashlib.sha1(image.cpu().numpy().tobytes()).hexdigest()[:16]
                f.write(f"{trainer.current_epoch} {trainer.global_step} {digest}\n")
        time.sleep(self.sleep)
