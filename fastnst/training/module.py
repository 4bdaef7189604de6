"""The LightningModule that trains a stylizing network (fastnst/core/networks) against a PerceptualLoss."""

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
from fastnst.core.networks import StyleNetwork

log = logging.getLogger(__name__)


class StyleTransferModule(L.LightningModule):
    """Trains ``network`` so that ``loss(network(x), x)`` is small over photos ``x``.

    ``style``: (1, 3, H, W) in [0, 1], or a list of them for a multi-style network; their Grams are
    computed once at fit start, on the training device, and never stored in checkpoints (the loss
    network is rebuilt from the config). ``style_ids``: the network's style row for each of them
    (default 0, 1, ...; a new style added to a trained network trains its own row only);
    ``style_names`` label the per-style logs. Training images are dealt to the styles in turn, so
    every style gets the same number of examples.
    ``hparams``: plain values saved in checkpoints and logged to TensorBoard; ``network`` is added.
    ``scheduler``: builds a learning-rate schedule for the optimizer, stepped every training step.
    """

    def __init__(self, network: StyleNetwork, loss: PerceptualLoss,
                 optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
                 style: torch.Tensor | list[torch.Tensor], hparams: dict[str, Any] | None = None,
                 channels_last: bool = False, nan_check_every_n_steps: int = 1,
                 style_ids: list[int] | None = None, style_names: list[str] | None = None,
                 scheduler: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler] | None = None,
                 ) -> None:
        super().__init__()
        self.network, self.loss, self.optimizer_factory = network, loss, optimizer
        self.scheduler_factory = scheduler
        self.channels_last = channels_last
        self.nan_check_every_n_steps = nan_check_every_n_steps
        self.save_hyperparameters({**(hparams or {}), "network": network.config})
        styles = [style] if isinstance(style, torch.Tensor) else list(style)
        for i, image in enumerate(styles):
            self.register_buffer(f"style_image_{i}", image, persistent=False)
        self.style_ids = style_ids or list(range(len(styles)))
        self.style_names = style_names or [str(i) for i in self.style_ids]
        if not (len(self.style_ids) == len(self.style_names) == len(styles)) or \
                max(self.style_ids) >= network.num_styles:
            raise ValueError(f"{len(styles)} style images, ids {self.style_ids} and names {self.style_names} do "
                             f"not fit a network of {network.num_styles} styles")
        self._last_time: float | None = None
        if channels_last:
            self.network.to(memory_format=torch.channels_last)

    @property
    def style_images(self) -> list[torch.Tensor]:
        return [getattr(self, f"style_image_{i}") for i in range(len(self.style_ids))]

    @property
    def multi_style(self) -> bool:
        return self.network.num_styles > 1

    def on_fit_start(self) -> None:
        self.loss.set_style(self.style_images)

    def on_validation_start(self) -> None:
        if not self.loss.has_style:  # trainer.validate() without fit
            self.loss.set_style(self.style_images)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x, style)

    def compute_losses(self, batch: torch.Tensor,
                       index: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The stylized batch and the weighted loss terms; ``index`` (N,): each image's style,
        as a position in ``style_ids`` (None: the only style)."""
        if index is None:
            out = self(batch)
            return out, self.loss(out, batch, network=self, sample=self.training)
        ids = torch.tensor(self.style_ids, device=batch.device)[index]
        weights = torch.nn.functional.one_hot(ids, self.network.num_styles).float()
        out = self(batch, weights)
        return out, self.loss(out, batch, network=lambda x: self(x, weights), style_index=index,
                              sample=self.training)

    def _training_styles(self, batch: torch.Tensor) -> torch.Tensor | None:
        """Deal this step's images to the styles in turn, continuing across steps and DDP ranks."""
        if not self.multi_style:
            return None
        n, k = batch.shape[0], len(self.style_ids)
        first = (self.global_step * self.trainer.world_size + self.global_rank) * n
        return (first + torch.arange(n, device=batch.device)) % k

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        _, terms = self.compute_losses(batch, self._training_styles(batch))
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
        if not self.multi_style:
            out, terms = self.compute_losses(batch)
            outs = [out]
            self.log_dict({f"val/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True,
                          batch_size=batch.shape[0])
        else:  # every held-out photo in every style: per-style losses, and their mean as val/<term>
            outs, per_style = [], []
            for k, name in enumerate(self.style_names):
                out, terms = self.compute_losses(batch, torch.full((batch.shape[0],), k, device=batch.device))
                outs.append(out)
                per_style.append(terms)
                self.log_dict({f"val/{name}/{t}": v for t, v in terms.items() if "/" not in t},
                              on_step=False, on_epoch=True, batch_size=batch.shape[0])
            self.log_dict({f"val/{t}": torch.stack([terms[t] for terms in per_style]).mean() for t in per_style[0]},
                          on_step=False, on_epoch=True, batch_size=batch.shape[0])
        if batch_idx == 0 and hasattr(self.logger, "experiment") and hasattr(self.logger.experiment, "add_image"):
            # One row per photo: the photo, then its stylization in each style.
            rows = torch.stack([batch.float(), *(o.clamp(0, 1).float() for o in outs)], dim=1).flatten(0, 1)
            self.logger.experiment.add_image("samples", make_grid(rows, nrow=1 + len(outs), padding=2),
                                             self.global_step)
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

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory([p for p in self.network.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The VGG weights are config, not training state: keep checkpoints small.
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("loss.")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"].update({f"loss.{k}": v for k, v in self.loss.state_dict().items()})
