"""Speed of fastnst's product paths against the pytorch/examples `fast_neural_style` way, in one run.

    python -m scripts.bench.speed            # CPU: small sizes, a few minutes; GPU: the full table
    python -m scripts.bench.speed --quick    # about a minute
    python -m scripts.bench.speed --compile  # also torch.compile rows (slow to warm up on a CPU)

Every row is measured beside a reference implemented here exactly as pytorch/examples does it
(fp32, eager, NCHW, batch 1 for stylizing; the full VGG16 on the content batch, the Gram of a
repeated style batch and in-place normalisation for training), on the same inputs, and reported
as a ratio to it, with the FLOP count of the work (torch.utils.flop_counter) and the achieved
TFLOP/s. Timing: CUDA-synchronised, after warm-up, median of repeats. Needs only torch,
torchvision and lightning (and this repository on the path).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import platform
import sys
import time
from collections import namedtuple
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision import models

from fastnst.core.device import keep_freed_memory, native_bf16_cpu
from fastnst.core.losses import PerceptualLoss
from fastnst.core.networks.base import UPSAMPLING
from fastnst.core.transformer import TransformerNet
from fastnst.inference.engines import openvino_available
from fastnst.inference.quantize import nncf_available
from fastnst.inference.stylizer import Stylizer
from fastnst.training.module import StyleTransferModule
from scripts.common import seconds, sync

ROOT = Path(__file__).resolve().parents[2]


def inference_paths(cuda: bool, dtypes: list[str], compile_rows: bool,
                    channels: int) -> list[tuple[str | None, str, bool, bool]]:
    """(engine, precision, channels_last, compile) rows: the product default first (engine None:
    whatever `fastnst stylize` picks here), then each engine and precision this device offers."""
    if cuda:
        return [(None, "auto", False, False)] + [("torch", p, cl, c) for p in dtypes for cl in (False, True)
                                                   for c in ((False, True) if compile_rows else (False,))]
    rows: list[tuple[str | None, str, bool, bool]] = [(None, "auto", False, False), ("torch", "fp32", False, False)]
    if channels == 32:
        rows += [("torch", "fp32", True, False)] + ([("torch", "fp32", False, True)] if compile_rows else [])
    if native_bf16_cpu():  # emulated bf16 is slower than fp32: only rows this CPU runs natively
        rows.append(("torch", "bf16", False, False))
    if openvino_available():
        rows += [("openvino", "fp32", False, False)] + ([("openvino", "bf16", False, False)]
                                                        if native_bf16_cpu() else [])
        rows += [("openvino", "int8", False, False)] if nncf_available() else []
    return rows


# ---- The reference: pytorch/examples fast_neural_style, reimplemented the same way -------------------------
class RefConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class RefResidualBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.in1 = RefConvLayer(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = RefConvLayer(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.in2(self.conv2(self.relu(self.in1(self.conv1(x))))) + x


class RefUpsampleConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, upsample: int) -> None:
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class RefTransformerNet(nn.Module):
    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.conv1, self.in1 = RefConvLayer(3, c, 9), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = RefConvLayer(c, 2 * c, 3, 2), nn.InstanceNorm2d(2 * c, affine=True)
        self.conv3, self.in3 = RefConvLayer(2 * c, 4 * c, 3, 2), nn.InstanceNorm2d(4 * c, affine=True)
        self.res = nn.Sequential(*(RefResidualBlock(4 * c) for _ in range(5)))
        self.deconv1, self.in4 = RefUpsampleConvLayer(4 * c, 2 * c, 3, 2), nn.InstanceNorm2d(2 * c, affine=True)
        self.deconv2, self.in5 = RefUpsampleConvLayer(2 * c, c, 3, 2), nn.InstanceNorm2d(c, affine=True)
        self.deconv3 = RefConvLayer(c, 3, 9)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


class RefVgg16(nn.Module):
    """All four slices, always: the content batch too goes through relu4_3."""

    def __init__(self) -> None:
        super().__init__()
        features = models.vgg16(weights=None).features
        self.slice1, self.slice2 = features[:4], features[4:9]
        self.slice3, self.slice4 = features[9:16], features[16:23]
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor):  # noqa: ANN201
        h1 = self.slice1(x)
        h2 = self.slice2(h1)
        h3 = self.slice3(h2)
        h4 = self.slice4(h3)
        return namedtuple("VggOutputs", ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])(h1, h2, h3, h4)


def ref_gram(y: torch.Tensor) -> torch.Tensor:
    b, ch, h, w = y.size()
    features = y.view(b, ch, w * h)
    return features.bmm(features.transpose(1, 2)) / (ch * h * w)


def ref_normalize_batch(batch: torch.Tensor) -> torch.Tensor:
    mean = batch.new_tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    std = batch.new_tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
    batch = batch.div_(255.0)
    return (batch - mean) / std


def ref_train_step(device: torch.device, batch: int, size: int, style: torch.Tensor) -> Callable[[torch.Tensor], None]:
    transformer = RefTransformerNet().to(device)
    vgg = RefVgg16().to(device)
    optimizer = torch.optim.Adam(transformer.parameters(), 1e-3)
    style = style.mul(255).repeat(batch, 1, 1, 1).to(device)
    gram_style = [ref_gram(y) for y in vgg(ref_normalize_batch(style))]
    mse = nn.MSELoss()

    def step(x: torch.Tensor) -> None:
        x = x.mul(255)
        n_batch = len(x)
        optimizer.zero_grad()
        y = ref_normalize_batch(transformer(x))
        x = ref_normalize_batch(x)
        features_y, features_x = vgg(y), vgg(x)
        content_loss = 1e5 * mse(features_y.relu2_2, features_x.relu2_2)
        style_loss = 0.0
        for ft_y, gm_s in zip(features_y, gram_style, strict=True):
            style_loss += mse(ref_gram(ft_y), gm_s[:n_batch, :, :])
        (content_loss + 1e10 * style_loss).backward()
        optimizer.step()

    return step


# ---- fastnst's product paths ----------------------------------------------------------------------------------
def fast_train_step(device: torch.device, precision: str, channels_last: bool, compile: bool, channels: int,
                    style: torch.Tensor) -> Callable[[torch.Tensor], None]:
    """The LightningModule's own loss code (StyleTransferModule.compute_losses, in training mode) with the
    shipped loss (conf/loss/perceptual.yaml, conf/style/starry_night.yaml: five style layers, relative
    errors, the palette term), under autocast as Lightning's bf16-mixed plugin runs it, with Adam."""
    loss_conf = OmegaConf.load(ROOT / "conf" / "loss" / "perceptual.yaml")
    style_conf = OmegaConf.load(ROOT / "conf" / "style" / "starry_night.yaml")
    loss = PerceptualLoss.from_spec(
        vgg="vgg16", vgg_weights="random", content_layers=dict(loss_conf.content_layers),
        style_layers=dict(loss_conf.style_layers), content_weight=style_conf.content_weight,
        style_weight=style_conf.style_weight, tv_weight=style_conf.tv_weight, style_norm=loss_conf.style_norm,
        content_norm=loss_conf.content_norm, palette_weight=style_conf.palette_weight)
    module = StyleTransferModule(TransformerNet(channels), loss, lambda p: torch.optim.Adam(p, 1e-3), style,
                                 channels_last=channels_last).to(device)
    if compile:
        module.network.compile()
    module.loss.set_style(module.style_images)
    optimizer = module.configure_optimizers()
    use_bf16 = precision == "bf16"

    def step(x: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            total = module.compute_losses(x)[1]["total"]
        total.backward()
        optimizer.step()

    return step


def cpu_capability() -> str:
    """The CPU's model and whether it runs bf16 natively (what decides the default precisions)."""
    model, flags = "", ""
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
        flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    kinds = [name for name, flag in (("AMX", "amx_bf16"), ("AVX512-BF16", "avx512_bf16")) if flag in flags]
    native = "native bf16: " + (" + ".join(kinds) if kinds else "yes" if native_bf16_cpu() else "no (fp32 only)")
    return f"{model or platform.processor() or 'CPU'}; {native}"


# ---- timing ---------------------------------------------------------------------------------------------------
def flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def profile(device: torch.device, size: int, batch: int, precision: str) -> int:
    """The operators that take the time in a few of fastnst's training steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    if device.type == "cpu":
        keep_freed_memory()  # as `train.py` does on a CPU
    style = torch.rand(1, 3, size, size, device=device)
    step = fast_train_step(device, precision, False, False, 32, style)
    x = torch.rand(batch, 3, size, size, device=device)
    step(x)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(3):
            step(x)
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"## Profile: 3 training steps, batch {batch} at {size}x{size}, {precision}, {device.type}\n")
    print(prof.key_averages().table(sort_by=key, row_limit=15))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="a one-minute check: fewer sizes and repeats")
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows (default on CUDA)")
    parser.add_argument("--sizes", help="inference sizes, e.g. 256,512,1024,1920x1080")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--train-batches", help="e.g. 4,16,64")
    parser.add_argument("--frames", type=int, help="frames per batch for the batched inference rows")
    parser.add_argument("--profile", action="store_true",
                        help="only profile fastnst's training step: where the time goes")
    parser.add_argument("--only", choices=["inference", "training"], help="one half of the table")
    parser.add_argument("--default-only", action="store_true",
                        help="inference: only the reference and what `fastnst stylize` runs by default")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    if cuda:
        sizes = args.sizes or "256,512,1024,1920x1080"
        train_size, batches, frames = args.train_size or 256, args.train_batches or "4,16,64", args.frames or 8
        warmup, repeats, compile_rows = 3, 10, True
    else:
        sizes = args.sizes or ("256" if args.quick else "256,512,1280x720,1920x1080")
        train_size = args.train_size or (64 if args.quick else 128)
        batches = args.train_batches or ("4" if args.quick else "4,8")
        # CPU timings wander by 10-20% between runs on a shared machine: more repeats, medians.
        frames, warmup, repeats, compile_rows = args.frames or 4, 2, 2 if args.quick else 7, args.compile
    if args.quick:
        repeats = min(repeats, 3)
    name = torch.cuda.get_device_name(device) if cuda else f"{cpu_capability()}; {torch.get_num_threads()} threads"
    if args.profile:  # the precision training runs at by default here
        return profile(device, train_size, int(batches.split(",")[0]), "bf16" if cuda or native_bf16_cpu() else "fp32")
    print(f"# fastnst benchmark — {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}\n")
    dtypes = ["fp32", "bf16"] if cuda or native_bf16_cpu() else ["fp32"]  # bf16 where it is native

    if args.only != "training":
        inference_table(device, cuda, sizes, dtypes, compile_rows, repeats, warmup, frames, args.default_only)
    if args.only != "inference":
        training_table(device, train_size, batches, dtypes, compile_rows, repeats, warmup)
    return 0


def inference_table(device: torch.device, cuda: bool, sizes: str, dtypes: list[str], compile_rows: bool,
                    repeats: int, warmup: int, frames: int, default_only: bool = False) -> None:
    print("## Inference (frames/s; ratio to the pytorch/examples reference at the same size)\n")
    print(row(["size", "model", "engine", "precision", "layout", "compile", "batch", "frames/s", "ratio", "TFLOP/s"]))
    print(row(["---"] * 10))
    for spec in sizes.split(","):
        w, h = (int(v) for v in spec.split("x")) if "x" in spec else (int(spec), int(spec))
        big = w * h > 1_000_000  # fewer repeats where one frame takes seconds
        reps, warm = (max(3, repeats // 2), 1) if big and not cuda else (repeats, warmup)
        x1 = torch.rand(1, 3, h, w, device=device)
        ref = RefTransformerNet().to(device).eval()
        with torch.no_grad():
            ref_s = seconds(partial(ref, x1 * 255), device, warm, reps)
            frame_flops = flops(partial(ref, x1))
        print(row([f"{w}x{h}", "reference", "torch", "fp32", "NCHW", "no", 1, f"{1 / ref_s:.2f}", "1.00",
                   f"{frame_flops / ref_s / 1e12:.2f}"]), flush=True)
        del ref
        # Both upsamplings: files before session 9 are nearest, new training bilinear (docs/quality.md).
        for (channels, label), upsample in itertools.product(((32, "johnson"), (16, "johnson_small")), UPSAMPLING):
            net_flops = flops(partial(TransformerNet(channels).eval(), x1.cpu())) if channels == 16 else frame_flops
            paths = inference_paths(cuda, dtypes, compile_rows, channels)
            for engine, precision, channels_last, compiled in paths[:1] if default_only else paths:
                stylizer = Stylizer(TransformerNet(channels, upsample=upsample), device=device.type,
                                    precision=precision, channels_last=channels_last, compile=compiled, engine=engine)
                for batch in (1, frames) if not big else (1,):
                    xb = torch.rand(batch, 3, h, w, device=device)
                    s = seconds(partial(stylizer.stylize_tensor, xb), device, warm + 2 * compiled, reps)
                    fps = batch / s
                    shown = f"default: {stylizer.engine}" if engine is None else engine
                    used = stylizer.engine.split()[-1] if engine is None else precision
                    print(row([f"{w}x{h}", f"{label} ({upsample})", shown, used,
                               "channels_last" if channels_last else "NCHW", "yes" if compiled else "no", batch,
                               f"{fps:.2f}", f"{fps * ref_s:.2f}", f"{net_flops * fps / 1e12:.2f}"]), flush=True)



def training_table(device: torch.device, train_size: int, batches: str, dtypes: list[str], compile_rows: bool,
                   repeats: int, warmup: int) -> None:
    print(f"\n## Training at {train_size}x{train_size} (images/s; ratio to the reference at the same batch)\n")
    print(row(["batch", "path", "precision", "layout", "compile", "images/s", "ratio", "TFLOP/s"]))
    print(row(["---"] * 8))
    style = torch.rand(1, 3, train_size, train_size)
    sizes = [int(b) for b in batches.split(",")]
    references = {}
    for batch in sizes:
        x = torch.rand(batch, 3, train_size, train_size, device=device)
        ref_step = ref_train_step(device, batch, train_size, style)
        # The reference divides its input in place, so it gets a fresh copy each step (as a loader would).
        ref_s = seconds(lambda step=ref_step, x=x: step(x.clone()), device, warmup, repeats)
        references[batch] = ref_s, flops(lambda step=ref_step, x=x: step(x.clone()))
        del ref_step
    if device.type == "cpu":  # as `train.py` does on a CPU; the reference ran with malloc's defaults
        keep_freed_memory()
    for batch in sizes:
        x = torch.rand(batch, 3, train_size, train_size, device=device)
        ref_s, ref_flops = references[batch]
        print(row([batch, "reference", "fp32", "NCHW", "no", f"{batch / ref_s:.2f}", "1.00",
                   f"{ref_flops / ref_s / 1e12:.2f}"]), flush=True)
        for precision in dtypes:
            for channels_last in (False, True):
                for compiled in (False, True) if compile_rows else (False,):
                    step = fast_train_step(device, precision, channels_last, compiled, 32, style.to(device))
                    step_flops = flops(partial(step, x))
                    s = seconds(partial(step, x), device, warmup + 2 * compiled, repeats)
                    print(row([batch, "fastnst", precision, "channels_last" if channels_last else "NCHW",
                               "yes" if compiled else "no", f"{batch / s:.2f}", f"{ref_s / s:.2f}",
                               f"{step_flops / s / 1e12:.2f}"]), flush=True)
                    del step


if __name__ == "__main__":
    sys.exit(main())
