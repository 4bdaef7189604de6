"""How fast and how smoothly does a stylizer learn? A plain training loop (no Lightning, for speed)
that compares output parameterisations, learning rates and loss weights on the same seed and data,
and reports held-out losses at fixed steps.

    python -m scripts.quality.train_dynamics --vgg-weights ../shared/assets/vgg/vgg16_standin.safetensors \
        --data ../shared/assets/train --held-out ../shared/assets/content --output sigmoid --steps 200
    python -m scripts.quality.train_dynamics ... --scales      # per-layer Gram magnitudes of the style and the photos

``--output``: ``sigmoid`` (fastnst's network), ``raw`` (unbounded, as pytorch/examples) or ``residual``
(x + f(x) with the last layer zeroed: an experiment, not a product option). Prints the first 30 training
losses and, every --eval-every steps, the held-out style loss (equal layer weights, style weight 1), the
content loss and the total under the configured weights; --save writes a strip of held-out results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torchvision.utils import make_grid

from fastnst.core.crops import random_crop
from fastnst.core.images import find_images, fit_long_side, load_rgb, resize, to_pil
from fastnst.core.losses import PerceptualLoss
from fastnst.core.styles import load_style
from fastnst.core.transformer import TransformerNet

LAYERS = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]


class Residual(torch.nn.Module):
    """x + f(x), starting at the identity."""

    def __init__(self, network: TransformerNet) -> None:
        super().__init__()
        self.network = network
        torch.nn.init.zeros_(network.deconv3.conv.weight)
        torch.nn.init.zeros_(network.deconv3.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.network(x)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vgg-weights", required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--held-out", type=Path, required=True)
    p.add_argument("--style", default="builtin:starry_night")
    p.add_argument("--style-size", type=int, default=512)
    p.add_argument("--output", default="sigmoid", choices=["sigmoid", "raw", "residual"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--style-weight", type=float, default=0.25)
    p.add_argument("--tv-weight", type=float, default=10.0)
    p.add_argument("--layers", default="1,1,0.5,0.2", help="relu1_2,relu2_2,relu3_3,relu4_3 weights")
    p.add_argument("--style-norm", default="target", choices=["target", "none"])
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--images", type=int, default=4, help="held-out photos")
    p.add_argument("--scales", action="store_true", help="print per-layer Gram magnitudes and exit")
    p.add_argument("--save", type=Path)
    p.add_argument("--log", type=Path, help="write the losses as JSON")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    style, _ = load_style(a.style, a.style_size)
    held = [fit_long_side(load_rgb(f), a.eval_size) for f in find_images(a.held_out)[: a.images]]
    spec = {"vgg_weights": a.vgg_weights, "content_layers": {"relu2_2": 1.0}}
    judge = PerceptualLoss.from_spec(**spec, style_layers=dict.fromkeys(LAYERS, 1.0), style_weight=1.0,
                                     tv_weight=0.0, style_norm="none")
    judge.set_style(style)
    if a.scales:
        photo = {k: sum(float(judge(h, h)[f"style/{k}"]) for h in held) / len(held) for k in LAYERS}
        target = {k: float(judge.style_gram(k).pow(2).mean()) for k in LAYERS}
        share = {k: v / sum(photo.values()) for k, v in photo.items()}
        print("| layer | mean(G_style²) | photo Gram MSE | share of style loss (none) | relative error (target) |")
        print("|---|---|---|---|---|")
        for k in LAYERS:
            print(f"| {k} | {target[k]:.3g} | {photo[k]:.3g} | {100 * share[k]:.2f}% | {photo[k] / target[k]:.2f} |")
        return
    weights = dict(zip(LAYERS, (float(w) for w in a.layers.split(",")), strict=True))
    loss = PerceptualLoss.from_spec(**spec, style_layers=weights, style_weight=a.style_weight, tv_weight=a.tv_weight,
                                    style_norm=a.style_norm)
    loss.set_style(style)
    base = TransformerNet(a.channels, output="raw" if a.output != "sigmoid" else "sigmoid")
    net = Residual(base) if a.output == "residual" else base
    photos = [load_rgb(f)[0] for f in find_images(a.data)]
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    g = torch.Generator().manual_seed(0)
    record: dict[str, list] = {"train": [], "eval": []}
    start = time.time()
    for step in range(1, a.steps + 1):
        x = torch.stack([random_crop(photos[i], a.size, generator=g)
                         for i in torch.randint(len(photos), (a.batch,), generator=g)])
        total = loss(net(x), x)["total"]
        opt.zero_grad()
        total.backward()
        opt.step()
        record["train"].append(float(total.detach()))
        if step % a.eval_every == 0 or step == a.steps:
            net.eval()
            with torch.no_grad():
                outs = [net(h).clamp(0, 1) for h in held]
                s = sum(float(judge(o, h)["style"]) for o, h in zip(outs, held, strict=True)) / len(held)
                c = sum(float(judge(o, h)["content"]) for o, h in zip(outs, held, strict=True)) / len(held)
                t = sum(float(loss(o, h)["total"]) for o, h in zip(outs, held, strict=True)) / len(held)
            net.train()
            record["eval"].append([step, s, c, t])
            print(f"step {step}: held-out style {s:.3e}, content {c:.3f}, total {t:.4g} ({time.time() - start:.0f} s)",
                  flush=True)
    print("first 30 training losses:", " ".join(f"{v:.3g}" for v in record["train"][:30]))
    if a.log:
        a.log.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, **record}))
    if a.save:
        with torch.no_grad():
            strip = [resize(net.eval()(h).clamp(0, 1), (160, 192))[0] for h in held]
        to_pil(make_grid(strip, nrow=len(strip), padding=2)[None]).save(a.save)


if __name__ == "__main__":
    main()
