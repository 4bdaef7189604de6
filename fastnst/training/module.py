"""The LightningModule that trains a TransformerNet against a PerceptualLoss."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torchvision.utils import make_grid

from fastnst.core.errors import FastNSTError
from fastnst.core.losses import PerceptualLoss
from fastnst.core.transformer import TransformerNet

log = logging.getLogger(__name__)


class StyleTransferModule(L.LightningModule):
    """Trains ``network`` so that ``loss(network(x), x)`` is small over photos ``x``.

    ``style``: (1, 3, H, W) in [0, 1]; its Grams are computed once at fit start, on the training
    device, and never stored in checkpoints (the loss network is rebuilt from the config).
    ``hparams``: plain values saved in checkpoints and logged to TensorBoard; ``network`` is added.
    """

    def __init__(self, network: TransformerNet, loss: PerceptualLoss,
                 optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
                 style: torch.Tensor, hparams: dict[str, Any] | None = None,
                 channels_last: bool = False,
                 nan_check_every_n_steps: int = 1) -> None:
        super().__init__()
        self.network, self.loss, self.optimizer_factory = network, loss, optimizer
        self.channels_last = channels_last
        self.nan_check_every_n_steps = nan_check_every_n_steps
        self.save_hyperparameters({**(hparams or {}), "network": network.config})
        self.register_buffer("style_image", style, persistent=False)
        self._last_time: float | None = None
        if channels_last:
            self.network.to(memory_format=torch.channels_last)

    def on_fit_start(self) -> None:
        self.loss.set_style(self.style_image)

    def on_validation_start(self) -> None:
        if not self.loss.has_style:  # trainer.validate() without fit
            self.loss.set_style(self.style_image)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x)

    def compute_losses(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The stylized batch and the weighted loss terms."""
        out = self(batch)
        return out, self.loss(out, batch, network=self)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        _, terms = self.compute_losses(batch)
        # A sync per check; a NaN must stop the run before a checkpoint stores broken weights.
        if self.global_step % self.nan_check_every_n_steps == 0 and not torch.isfinite(terms["total"]):
            last = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or "none written yet"
            raise FastNSTError(f"the loss became {terms['total'].item()} at step {self.global_step}; the last good "
                               f"checkpoint is {last}; lower the learning rate or the loss weights and resume from it",
                               param="lr")
        self.log("loss/total", terms["total"].detach(), prog_bar=True, on_step=True, on_epoch=False)
        self.log_dict({f"loss/{k}": v.detach() for k, v in terms.items() if k != "total"},
                      on_step=True, on_epoch=False)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        return terms["total"]

    def on_train_batch_end(self, outputs: Any, batch: torch.Tensor, batch_idx: int) -> None:
        # Wall time between consecutive steps, so data loading is counted too.
        now = time.perf_counter()
        if self._last_time is not None:
            images = batch.shape[0] * self.trainer.world_size
            self.log("perf/images_per_sec", images / (now - self._last_time), on_step=True, on_epoch=False)
        self._last_time = now

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        out, terms = self.compute_losses(batch)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True,
                      batch_size=batch.shape[0])
        if batch_idx == 0 and hasattr(self.logger, "experiment") and hasattr(self.logger.experiment, "add_image"):
            pairs = torch.stack([batch.float(), out.clamp(0, 1).float()], dim=1).flatten(0, 1)  # content | stylized
            self.logger.experiment.add_image("samples", make_grid(pairs, nrow=2, padding=2), self.global_step)
        self._last_time = None  # validation time is not training throughput

    def on_train_end(self) -> None:
        # DDP keeps replicas identical by construction; check it, since a silent divergence (a rank
        # that skipped a step) would otherwise only show as a worse stylizer.
        checksum = torch.stack([p.detach().double().sum() for p in self.network.parameters()]).sum()
        log.info("rank %d: network parameter checksum %.10f", self.global_rank, float(checksum))
        if self.trainer.world_size > 1:
            sums = self.all_gather(checksum)
            if not torch.allclose(sums, sums[0], rtol=1e-9, atol=0):
                raise RuntimeError(f"DDP ranks disagree on the weights: {sums.tolist()}")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.network.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The VGG weights are config, not training state: keep checkpoints small.
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("loss.")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"].update({f"loss.{k}": v for k, v in self.loss.state_dict().items()})
