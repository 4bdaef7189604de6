"""Where and in what precision to run: names a user types mapped to torch devices and dtypes."""

from __future__ import annotations

import ctypes
import sys

import torch

from fastnst.core.errors import FastNSTError


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise FastNSTError("device cuda: no CUDA GPU is available here; use cpu", param="device")
    if device == "mps" and not torch.backends.mps.is_available():
        raise FastNSTError("device mps: Apple's Metal backend is not available here; use cpu", param="device")
    if device not in ("cpu", "cuda", "mps"):
        raise FastNSTError(f"unknown device {device!r}; choose auto, cpu, cuda or mps", param="device")
    return torch.device(device)


def native_bf16_cpu() -> bool:
    """Whether this CPU executes bf16 natively (AMX or AVX512-BF16); elsewhere bf16 is emulated, slow."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_preferred(device: torch.device) -> bool:
    """The one precision policy of training, fitting and stylizing: bf16 on CUDA and on CPUs that run it natively
    (AMX, AVX512-BF16); elsewhere it is emulated and slower than fp32 (docs/speed.md)."""
    return device.type == "cuda" or device.type == "cpu" and native_bf16_cpu()


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 where ``bf16_preferred``, fp16 on MPS, fp32 elsewhere."""
    if precision == "auto":
        if bf16_preferred(device):
            return torch.bfloat16
        return torch.float16 if device.type == "mps" else torch.float32
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise FastNSTError(f"unknown precision {precision!r}; choose auto, fp32, bf16 or fp16", param="precision")
    if precision == "fp16" and device.type == "cpu":
        raise FastNSTError("precision fp16 is not supported on the CPU; use fp32 or bf16", param="precision")
    return dtypes[precision]


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of returning it to the system; False where it
    cannot (not Linux, not glibc). A CPU training step frees and reallocates the same large activations, and
    glibc serves blocks above 32 MB with fresh mappings the kernel zero-fills page by page: a sixth of a
    training run's time went to that. For the process that trains only: it keeps more memory in exchange
    (docs/speed.md: 150 steps 12% faster, peak memory 18% higher)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl): its defaults stand
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return mallopt(m_mmap_max, 0) == 1 and mallopt(m_trim_threshold, 2**31 - 1) == 1
