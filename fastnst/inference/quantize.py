"""INT8 post-training quantization of an OpenVINO graph of the TransformerNet, with NNCF (Intel's
quantization tool for OpenVINO, the ``[int8]`` extra).

Calibration needs images, not the user's: crops of the public-domain paintings that ship with fastnst
(``fastnst/assets/styles``). That works because every convolution of the network but the first is fed by
an instance norm, whose output range does not depend on the picture; the first takes pixels in [0, 1].
Measured on the starters with scripts/quality/engines.py and scripts/bench/speed.py (docs/speed.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from fastnst.core.errors import FastNSTError

log = logging.getLogger(__name__)
CALIBRATION_CROPS = 32
CROP = 256
PAINTINGS = Path(__file__).resolve().parent.parent / "assets" / "styles"


def nncf_available() -> bool:
    try:
        import nncf  # noqa: F401
    except ImportError:
        return False
    return True


def nncf_version() -> str:
    import nncf

    return nncf.__version__


def calibration_inputs(num_styles: int, crops: int | None = None, seed: int = 0) -> list[list[np.ndarray]]:
    """Network inputs for calibration: ``crops`` (default CALIBRATION_CROPS) random CROP x CROP crops of the
    built-in paintings in [0, 1] (and, for a multi-style network, one style at a time in turn).
    Deterministic for a seed."""
    crops = crops or CALIBRATION_CROPS
    paths = sorted(PAINTINGS.glob("*.jpg"))
    if not paths:
        raise FastNSTError(f"no calibration images in {PAINTINGS} (a broken install?)", param="precision")
    paintings = [np.asarray(Image.open(p).convert("RGB"), np.float32) / 255 for p in paths[:crops]]  # those used
    rng = np.random.default_rng(seed)
    inputs = []
    for i in range(crops):
        image = paintings[i % len(paintings)]
        top, left = rng.integers(0, image.shape[0] - CROP + 1), rng.integers(0, image.shape[1] - CROP + 1)
        item = [np.ascontiguousarray(image[top:top + CROP, left:left + CROP].transpose(2, 0, 1)[None])]
        if num_styles > 1:
            item.append(np.eye(num_styles, dtype=np.float32)[None, i % num_styles])
        inputs.append(item)
    return inputs


def quantize(model: object, num_styles: int) -> object:
    """The INT8 version of an OpenVINO model of the network (weights symmetric per channel, activations
    asymmetric per tensor)."""
    if not nncf_available():
        raise FastNSTError("precision int8 needs NNCF: pip install 'fastnst[int8]'", param="precision")
    import nncf

    log.warning("quantizing the model to INT8, once (cached): about 15 s")
    # NNCF's progress bars and notes go to stdout, where `fastnst stylize - ` writes its image: kept out.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        # MIXED: asymmetric activations, since instance-norm outputs shifted by β are not centred on zero
        # (docs/speed.md: better PSNR than symmetric at the same speed).
        inputs = calibration_inputs(num_styles)
        return nncf.quantize(model, nncf.Dataset(inputs), subset_size=len(inputs), preset=nncf.QuantizationPreset.MIXED)
