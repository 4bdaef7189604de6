"""The models the app offers: the starters, the files given on the command line, and files uploaded in
the page. Each is loaded once, on first use, and kept."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import ModelMeta, load_network, read_metadata, starter_models
from fastnst.inference.batch import unique_name
from fastnst.inference.stylizer import Stylizer

log = logging.getLogger(__name__)
MODEL_SUFFIXES = (".safetensors", ".ckpt")
LIVE_STREAMS = 2  # webcam frames stylized at once (the page keeps three in flight)


@dataclass
class Entry:
    id: str
    path: Path
    meta: ModelMeta  # read once: the page lists models and every request names one
    starter: bool
    uploaded: bool = False
    stylizer: Stylizer | None = field(default=None, repr=False)
    live: Stylizer | None = field(default=None, repr=False)


class ModelBook:
    """``id -> model``, in the order shown in the page (starters first). ``workdir``: where uploads go
    (and, for them, the OpenVINO cache, so nothing of theirs outlives the app)."""

    def __init__(self, paths: list[Path], workdir: Path, device: str = "auto", engine: str | None = None) -> None:
        self.workdir, self.device, self.engine = workdir, device, engine
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        for name, path in starter_models().items():
            self._entries[name] = Entry(name, path, read_metadata(path), starter=True)
        for path in expand_model_paths(paths):
            # A foreign file given at start-up fails the start, with its name.
            self._add(Entry(self._free_id(path.stem), path, read_metadata(path), starter=False))

    def _free_id(self, stem: str) -> str:
        return unique_name(stem, self._entries.__contains__)

    def _add(self, entry: Entry) -> Entry:
        self._entries[entry.id] = entry
        return entry

    def ids(self) -> list[str]:
        return list(self._entries)

    def check(self, model_id: str) -> None:
        """Raises for an id that names no model."""
        self._entry(model_id)

    def describe(self, model_id: str) -> dict:
        """What the page shows of a model: name, styles (several for a multi-style model), network."""
        entry = self._entry(model_id)
        meta = entry.meta
        return {"id": entry.id, "style": meta.style_name, "styles": meta.style_names if meta.styles else [],
                "default_style": meta.style_by_default if meta.styles else "",
                "description": meta.description, "starter": entry.starter, "uploaded": entry.uploaded,
                "network": meta.network, "steps": meta.steps}

    def stylizer(self, model_id: str, live: bool = False) -> Stylizer:
        """The model ready to stylize. ``live``: a second copy for the webcam, which runs LIVE_STREAMS
        frames at once on OpenVINO (fewer threads each: a browser on the same cores stalls them less),
        in INT8 where it can."""
        entry = self._entry(model_id)
        with self._lock:  # two requests for a model not yet loaded load it once
            if live and entry.live is None:
                entry.live = self._load(entry, LIVE_STREAMS, int8=True)
            if not live and entry.stylizer is None:
                entry.stylizer = self._load(entry, 1, int8=False)
            return entry.live if live else entry.stylizer

    def _load(self, entry: Entry, streams: int, int8: bool) -> Stylizer:
        network, meta = load_network(entry.path)
        cache = self.workdir / "openvino" if entry.uploaded else None
        if int8:
            try:  # faster than fp32 where it runs (OpenVINO on the CPU, NNCF installed; docs/speed.md)
                return Stylizer(network, meta, self.device, "int8", engine=self.engine, engine_cache=cache,
                                streams=streams)
            except FastNSTError as err:  # not here (a GPU, no NNCF, PyTorch asked for): the default precision
                log.info("the webcam runs %s at the default precision: %s", entry.id, err)
        return Stylizer(network, meta, self.device, engine=self.engine, engine_cache=cache, streams=streams)

    def upload(self, filename: str, data: bytes) -> str:
        """Keep an uploaded model file in the work folder, if it is a fastnst stylizer; its id."""
        suffix = Path(filename).suffix.lower()
        if suffix not in MODEL_SUFFIXES:
            raise FastNSTError(f"{filename}: a model file ends in .safetensors or .ckpt")
        digest = hashlib.sha256(data).hexdigest()[:12]
        folder = self.workdir / "models"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}{suffix}"
        path.write_bytes(data)
        try:
            _, meta = load_network(path)  # a file that is not a stylizer never reaches the list
        except FastNSTError as err:
            path.unlink()
            raise FastNSTError(str(err).replace(str(path), filename)) from None
        with self._lock:
            for entry in self._entries.values():
                if entry.path == path:
                    return entry.id
            return self._add(Entry(self._free_id(Path(filename).stem), path, meta, starter=False, uploaded=True)).id

    def add_fitted(self, path: Path, stem: str) -> str:
        """Offer a model fitted in the app (a painting added as a style); its id."""
        with self._lock:
            for entry in self._entries.values():
                if entry.path == path:
                    return entry.id
            return self._add(Entry(self._free_id(stem), path, read_metadata(path), starter=False, uploaded=True)).id

    def path(self, model_id: str) -> Path:
        return self._entry(model_id).path

    def _entry(self, model_id: str) -> Entry:
        try:
            return self._entries[model_id]
        except KeyError:
            raise FastNSTError(f"no model {model_id!r}; choose one of {', '.join(self._entries)}") from None


def expand_model_paths(paths: list[Path]) -> list[Path]:
    """Model files and folders (their ``*.safetensors``/``*.ckpt``) -> files. Raises for a missing path
    or a folder without models."""
    files: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in MODEL_SUFFIXES and p.is_file())
            if not found:
                raise FastNSTError(f"{path}: no .safetensors or .ckpt model files in this folder", param="models")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FastNSTError(f"{path}: no such model file or folder", param="models")
    return files
