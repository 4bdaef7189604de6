"""An independent judge of stylized images, on a real ImageNet VGG16: how close to the painting, how
much of the photo kept. Deliberately shares no code with fastnst's training loss (fastnst.core.losses
and fastnst.core.vgg), so that tuning the loss cannot quietly tune the judge.

    python -m scripts.quality.judge --vgg ../shared/assets/vgg/vgg16_imagenet.safetensors \
        --style ../shared/assets/styles/starry_night.jpg --content photo.jpg result.png [more.png ...]

Per image:
- style distance at relu1_2, relu2_2, relu3_3, relu4_3: ‖G(x) − G(s)‖² / ‖G(s)‖² (Frobenius), with
  G = F Fᵀ / (H·W) the Gram matrix of layer features, x the result and s the painting;
- palette: the sliced Wasserstein distance between the result's and the painting's RGB pixel sets
  (64 fixed random directions, 8,192 pixels sampled from each, values in [0, 1]);
- content: ‖F(x) − F(c)‖ / ‖F(c)‖ at relu3_3, c the photo resized to the result's size.
Lower is better for all three. The painting is judged at a long side of 512 px.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torchvision import models

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu3_3"
# Index of each ReLU in torchvision's vgg16().features.
_RELU_INDEX = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
STYLE_SIZE = 512


def load_image(path: Path | str, long_side: int | None = None) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1], resized (Lanczos) so its long side is ``long_side`` when given."""
    img = Image.open(path).convert("RGB")
    if long_side is not None:
        scale = long_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(img.height, img.width, 3).permute(2, 0, 1).unsqueeze(0).float().contiguous() / 255


class Judge:
    """Holds the VGG16 and one painting's Grams and pixels."""

    def __init__(self, vgg_weights: Path | str, style: Path | str) -> None:
        net = models.vgg16(weights=None).features[: _RELU_INDEX["relu4_3"] + 1]
        state = load_file(str(vgg_weights))
        state = {k.removeprefix("features."): v for k, v in state.items()}
        net.load_state_dict({k: v for k, v in state.items() if k in net.state_dict()})
        self.net = net.eval().requires_grad_(False)
        s = load_image(style, STYLE_SIZE)
        self.style_grams = {k: _gram(v) for k, v in self.features(s).items()}
        self.style_pixels = _sample_pixels(s)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, h = {}, (x - _MEAN) / _STD
        wanted = {i: name for name, i in _RELU_INDEX.items()}
        for i, layer in enumerate(self.net):
            h = layer(h)
            if i in wanted:
                out[wanted[i]] = h
        return out

    @torch.no_grad()
    def score(self, result: torch.Tensor, photo: torch.Tensor) -> dict[str, float]:
        """result: (1, 3, H, W) in [0, 1]; photo: any size (resized to the result's)."""
        photo = F.interpolate(photo, size=result.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
        fx, fc = self.features(result), self.features(photo)
        scores = {}
        for name in STYLE_LAYERS:
            target = self.style_grams[name]
            scores[name] = float((_gram(fx[name]) - target).pow(2).sum() / target.pow(2).sum())
        scores["palette"] = sliced_wasserstein(_sample_pixels(result), self.style_pixels)
        scores["content"] = float((fx[CONTENT_LAYER] - fc[CONTENT_LAYER]).norm() / fc[CONTENT_LAYER].norm())
        return scores


def _gram(f: torch.Tensor) -> torch.Tensor:
    _, c, h, w = f.shape
    f = f.reshape(c, h * w).double()
    return f @ f.T / (h * w)


def _sample_pixels(x: torch.Tensor, n: int = 8192) -> torch.Tensor:
    pixels = x[0].reshape(3, -1).T
    g = torch.Generator().manual_seed(0)
    return pixels[torch.randint(len(pixels), (n,), generator=g)]


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: int = 64) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the projections."""
    g = torch.Generator().manual_seed(1)
    d = torch.randn(3, directions, generator=g)
    d = d / d.norm(dim=0, keepdim=True)
    pa, pb = (a @ d).sort(dim=0).values, (b @ d).sort(dim=0).values
    return float((pa - pb).abs().mean())


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(max(v, 1e-12)) for v in values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vgg", required=True, help="ImageNet VGG16 weights (.safetensors, torchvision layout)")
    parser.add_argument("--style", required=True, help="the painting")
    parser.add_argument("--content", required=True, help="the photo the results were made from")
    parser.add_argument("results", nargs="+")
    args = parser.parse_args(argv)
    judge = Judge(args.vgg, args.style)
    photo = load_image(args.content)
    keys = [*STYLE_LAYERS, "palette", "content"]
    print("| image | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for path in args.results:
        s = judge.score(load_image(path), photo)
        print(f"| {Path(path).name} | " + " | ".join(f"{s[k]:.3f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
