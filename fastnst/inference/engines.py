"""Inference engines: PyTorch eager (everywhere) and OpenVINO (Intel's inference engine for x86-64 and
ARM CPUs, the fast path on the CPU).

The OpenVINO graph is converted once per model file, engine version, precision and graph variant and
cached on disk (``~/.cache/fastnst/openvino``); a cache entry that does not load is rebuilt, never
trusted. Two graph variants: ``plain`` (image [, style weights]) and ``stats`` (the same plus every
instance norm's mean and variance as inputs), which tiling uses so that all tiles are normalised with
the statistics of the whole image.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import warnings
from pathlib import Path

import torch

from fastnst.core.cache import cache_dir
from fastnst.core.errors import FastNSTError
from fastnst.core.networks import StyleNetwork
from fastnst.inference.quantize import calibration_inputs, nncf_available, nncf_version, quantize
from fastnst.inference.tiling import measure_norm_stats

log = logging.getLogger(__name__)
ENGINES = ("auto", "torch", "openvino")
MIN_SIZE = 5  # the converted graph has no branch for inputs smaller than reflection padding needs


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class _WithStats(torch.nn.Module):
    """The network with each norm's (mean, var) as inputs: (image, [style,] mean_1, var_1, ...)."""

    def __init__(self, network: StyleNetwork) -> None:
        super().__init__()
        self.network = network
        self.norms = network.norm_layers()

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        style, stats = (rest[0], rest[1:]) if self.network.num_styles > 1 else (None, rest)
        for i, norm in enumerate(self.norms):
            norm.fixed_stats = (stats[2 * i], stats[2 * i + 1])
        try:
            return self.network(x, style)
        finally:
            for norm in self.norms:
                norm.fixed_stats = None


class OpenVINOEngine:
    """A stylizing network compiled by OpenVINO for the CPU. ``precision``: ``fp32``, ``bf16`` (OpenVINO's
    inference precision hint: weights stay fp32 in the graph, compute runs in bf16) or ``int8`` (the
    graph quantized by NNCF, ``fastnst.inference.quantize``; the tiling variant stays fp32).
    ``cache``: the folder converted graphs are kept in (None: ``~/.cache/fastnst/openvino``).
    ``streams``: how many calls from different threads run at once (1: one at a time, each on every
    core, the lowest latency; 2+: OpenVINO's throughput mode, a few cores per call, for a stream of
    frames arriving while something else, such as a browser, uses the same cores)."""

    def __init__(self, network: StyleNetwork, precision: str = "fp32", key: str | None = None,
                 cache: Path | None = None, streams: int = 1) -> None:
        if not openvino_available():
            raise FastNSTError("the openvino engine is not installed (pip install openvino)", param="engine")
        if precision not in ("fp32", "bf16", "int8"):
            raise FastNSTError(f"the openvino engine runs fp32, bf16 or int8, not {precision}", param="precision")
        if precision == "int8" and not nncf_available():
            raise FastNSTError("precision int8 needs NNCF: pip install 'fastnst[int8]'", param="precision")
        import openvino as ov

        self.network, self.precision, self.version = network, precision, ov.__version__
        self.key = key or _weights_key(network)
        self.cache = cache or cache_dir() / "openvino"
        self.streams = max(1, streams)
        self._compiled: dict[str, object] = {}
        self._requests: dict[str, queue.Queue] = {}  # per variant: the infer requests not in use
        self._lock = threading.RLock()  # guards the two dicts
        self.compile("plain")  # fails here, once, if this model cannot run on OpenVINO

    def compile(self, variant: str) -> object:
        """The compiled graph of ``variant``, from the cache when an entry there passes the probe."""
        with self._lock:  # two threads asking at once compile once
            if variant not in self._compiled:
                path = self.cache / f"{self.key}-ov{self.version.split('-')[0]}-{variant}.xml"
                if self._int8(variant):
                    path = path.with_name(f"{path.stem}-int8m-nncf{nncf_version()}.xml")  # m: MIXED preset
                compiled = None
                if path.is_file():
                    try:
                        compiled = self._checked(self._read(path), variant)
                    except Exception:  # a truncated, foreign or wrong entry: never trusted, rebuilt
                        log.warning("rebuilding the OpenVINO cache entry %s", path.name)
                if compiled is None:
                    try:
                        compiled = self._checked(self._convert_and_save(variant, path), variant)
                    except FastNSTError:  # a graph that failed its probe must not be found next time
                        for stale in (path, path.with_suffix(".bin")):
                            stale.unlink(missing_ok=True)
                        raise
                self._compiled[variant] = compiled
            return self._compiled[variant]

    def _int8(self, variant: str) -> bool:
        return self.precision == "int8" and variant == "plain"

    @staticmethod
    def _read(path: Path) -> object:
        import openvino as ov

        return ov.Core().read_model(str(path))

    def _checked(self, model: object, variant: str) -> object:
        """Compile ``model`` and compare it with PyTorch on a probe image; raises if they disagree."""
        import openvino as ov

        # The flag to blame when this graph is refused: an INT8 graph is a --precision choice.
        param = "precision" if self._int8(variant) else "engine"
        shape = model.input(0).get_partial_shape()
        if not (shape.rank.is_static and shape.rank.get_length() == 4 and shape[2].is_dynamic
                and shape[3].is_dynamic):  # a fixed-size graph would pass a probe of that size, then fail
            raise FastNSTError(f"the OpenVINO graph's input shape {shape} is not dynamic", param=param)
        config = {"INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[self.precision]}
        if self.streams > 1:
            config |= {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams}
        try:
            compiled = ov.Core().compile_model(model, "CPU", config)
        except RuntimeError as err:
            raise FastNSTError(f"OpenVINO cannot compile this model ({str(err).splitlines()[0][:160]})",
                               param=param) from None
        # INT8 is probed on a painting (random noise is far from anything it was calibrated for).
        probe = torch.from_numpy(calibration_inputs(1, crops=1, seed=1)[0][0]) if self._int8(variant) \
            else torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
        style = torch.full((1, self.network.num_styles), 1 / self.network.num_styles) \
            if self.network.num_styles > 1 else None
        stats = measure_norm_stats(lambda t: self.network(t, style), probe, self.network) \
            if variant == "stats" else None
        inputs = self._inputs(probe, style, stats)
        with torch.no_grad():
            expected = self.network(probe, style)
        difference = (torch.from_numpy(compiled(inputs)[0]) - expected).abs()
        # INT8 is judged on the mean (single pixels may move by a few levels), the others on the maximum.
        error = (difference.mean() if self._int8(variant) else difference.max()).item()
        limit = {"fp32": 1e-3, "bf16": 0.05, "int8": 0.02}[self.precision]
        if not error <= limit:  # also catches NaN
            raise FastNSTError(f"OpenVINO's result differs from PyTorch's by {error:.3g} on a probe image",
                               param=param)
        return compiled

    def _convert_and_save(self, variant: str, path: Path) -> object:
        import openvino as ov

        model = self._convert(variant)
        if self._int8(variant):
            model = quantize(model, self.network.num_styles)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.xml")  # shards converting at once never collide
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            ov.save_model(model, str(tmp), compress_to_fp16=False)
            tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
            tmp.replace(path)  # the .xml last: an entry whose .xml exists is complete
        except (OSError, RuntimeError) as err:  # read-only, full or not a folder: run from memory instead
            log.warning("cannot write the OpenVINO cache in %s (%s); converting in memory each run "
                        "(set FASTNST_CACHE to a writable folder)", self.cache, getattr(err, "strerror", None) or err)
            for stale in (tmp, tmp.with_suffix(".bin")):
                try:
                    stale.unlink(missing_ok=True)
                except OSError:
                    pass
        return model

    @staticmethod
    def _inputs(x: torch.Tensor, style: torch.Tensor | None,
                stats: list[tuple[torch.Tensor, torch.Tensor]] | None) -> list:
        inputs = [x.float().contiguous().numpy()]
        if style is not None:
            inputs.append(style.float().expand(x.shape[0], -1).contiguous().numpy())
        if stats is not None:
            inputs += [t.float().contiguous().numpy() for pair in stats for t in pair]
        return inputs

    def _convert(self, variant: str) -> object:
        import openvino as ov

        net, styles = self.network.float().eval(), self.network.num_styles
        example: list[torch.Tensor] = [torch.rand(1, 3, 64, 64)]
        shapes = [ov.PartialShape([-1, 3, -1, -1])]
        if styles > 1:
            example.append(torch.full((1, styles), 1 / styles))
            shapes.append(ov.PartialShape([-1, styles]))
        module: torch.nn.Module = net
        if variant == "stats":
            module = _WithStats(net)
            for norm in module.norms:
                channels = norm.weight.shape[-1]
                example += [torch.zeros(channels), torch.ones(channels)]
                shapes += [ov.PartialShape([channels])] * 2
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
            return ov.convert_model(module, example_input=tuple(example), input=shapes)

    def __call__(self, x: torch.Tensor, style: torch.Tensor | None = None,
                 stats: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """(N, 3, H, W) float -> (N, 3, H, W) float32; ``style`` (N, S); ``stats`` per norm layer."""
        variant = "stats" if stats is not None else "plain"
        with self._lock:
            if variant not in self._requests:
                compiled = self.compile(variant)
                self._requests[variant] = queue.Queue()
                for _ in range(self.streams):
                    self._requests[variant].put(compiled.create_infer_request())
        pool = self._requests[variant]
        request = pool.get()  # waits while `streams` calls are running
        try:
            request.infer(self._inputs(x, style, stats))  # OpenVINO releases the GIL while it runs
            return torch.from_numpy(request.get_output_tensor(0).data.copy())
        finally:
            pool.put(request)


def _weights_key(network: StyleNetwork) -> str:
    """What the cache is keyed by: the architecture and every weight, bit for bit."""
    digest = hashlib.sha256(repr(sorted(network.config.items())).encode())
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]
