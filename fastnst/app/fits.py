"""The app's "Add a style": a dropped painting fitted onto a multi-style model in a child process, one at a
time, with progress and a live preview the page polls, and cancel at any moment.

A child process rather than a thread: it runs PyTorch on one thread, so the app's other core keeps
webcam frames and photos flowing, and a cancelled or crashed fit cannot take the server with it. The
result goes to the same cache as `fastnst add-style` (a painting fitted here is instant on the command
line), and the model joins the app's list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import multiprocessing
import os
import queue
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastnst.core.errors import FastNSTError
from fastnst.inference.fitting import PHOTO_DIR, FitOptions, read_painting, style_name

ACTIVE = ("starting", "waiting", "running")  # a fit's states before it ends
LIVE_QUALITY = 85  # JPEG quality of what is shown often and briefly: webcam frames, fit previews

log = logging.getLogger(__name__)
PREVIEW_EVERY_S = 3.0  # a new preview this often: each costs the fit a forward pass
PREVIEW_SIDE = 320
STOP_WAIT_S = 15  # a cancelled child that has not stopped by then is terminated


@dataclass
class StyleFit:
    id: str
    painting: Path
    name: str  # the painting's file name as uploaded
    base: str
    state: str = "starting"  # starting -> (waiting ->) running -> done | error | cancelled
    step: int = 0
    steps: int = 0
    loss: float = 0.0
    eta: float = 0.0
    error: str = ""
    model: str = ""  # the app's id of the new model, when done
    style: str = ""  # the new style's name in it
    preview: bytes = b""
    previews: int = 0  # how many previews so far: the page fetches a new one when this changes

    def status(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "step": self.step, "steps": self.steps, "loss": self.loss,
                "eta": round(self.eta), "error": self.error, "model": self.model, "style": self.style,
                "previews": self.previews, "name": self.name}


class StyleFits:
    """Runs fits in a child process, one at a time. ``on_done(path, fit)`` adds a finished model to the app
    and returns its id."""

    def __init__(self, workdir: Path, options: FitOptions, on_done: Any) -> None:
        self.workdir, self.options, self.on_done = workdir, options, on_done
        self._fits: dict[str, StyleFit] = {}
        self._running: tuple[StyleFit, Any, Any] | None = None  # (fit, process, cancel event)
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded server

    def start(self, filename: str, data: bytes, base_path: Path, base_id: str, photo: bytes | None,
              steps: int | None = None) -> StyleFit:
        """Check the painting, then fit it in the background (``steps``: instead of the app's). Refused while
        another fit runs."""
        options = dataclasses.replace(self.options, steps=steps) if steps else self.options
        with self._lock:
            if self._running is not None and self._running[0].state in ACTIVE:
                raise FastNSTError(f"{self._running[0].name} is being fitted; wait for it or cancel it")
            fit_id = uuid.uuid4().hex[:16]
            folder = self.workdir / "paintings" / fit_id
            folder.mkdir(parents=True)
            painting = folder / f"{style_name(Path(filename))}{Path(filename).suffix.lower()[:8] or '.png'}"
            painting.write_bytes(data)
            try:
                read_painting(painting)
            except FastNSTError as err:
                shutil.rmtree(folder, ignore_errors=True)  # a refused upload leaves nothing on disk
                raise FastNSTError(_as_uploaded(str(err), painting, Path(filename).name)) from None
            fit = StyleFit(fit_id, painting, Path(filename).name, base_id, steps=options.steps)
            events = self._context.Queue()
            cancel = self._context.Event()
            process = self._context.Process(target=_child, name="fastnst-fit", daemon=True,
                                            args=(painting, base_path, options, photo, events, cancel, os.getpid()))
            process.start()
            self._fits[fit_id] = fit
            self._running = (fit, process, cancel)
        threading.Thread(target=self._follow, args=(fit, process, events), daemon=True).start()
        return fit

    def get(self, fit_id: str) -> StyleFit:
        try:
            return self._fits[fit_id]
        except KeyError:
            raise FastNSTError(f"no style fit {fit_id!r} (the app was restarted?)") from None

    def cancel(self, fit_id: str) -> StyleFit:
        fit = self.get(fit_id)
        running = self._running
        if running is not None and running[0] is fit and fit.state in ACTIVE:
            running[2].set()
        return fit

    def close(self) -> None:
        """Stop a fit in progress (the app is shutting down)."""
        running = self._running
        if running is None:
            return
        fit, process, cancel = running
        cancel.set()
        process.join(STOP_WAIT_S)
        if process.is_alive():
            process.terminate()

    def _follow(self, fit: StyleFit, process: Any, events: Any) -> None:
        """Apply the child's messages to ``fit`` until it ends."""
        while True:
            try:
                kind, value = events.get(timeout=0.5)
            except queue.Empty:
                if not process.is_alive() and events.empty():  # it may have sent "done" just before exiting
                    break
                continue
            if kind == "progress":
                fit.state = "running"
                fit.step, fit.steps, fit.loss, fit.eta = value
            elif kind == "waiting":
                fit.state = "waiting"
            elif kind == "preview":
                fit.preview, fit.previews = value, fit.previews + 1
            elif kind == "done":
                try:
                    fit.model, fit.style = self.on_done(Path(value), fit), _last_style(Path(value))
                    fit.state = "done"
                except Exception as err:  # a bug: the page hears of it, the server keeps serving
                    log.exception("a fitted model could not be added")
                    fit.state, fit.error = "error", f"the fitted model could not be added ({err})"
            elif kind in ("error", "cancelled"):
                fit.state, fit.error = kind, _as_uploaded(str(value), fit.painting, fit.name)
            if fit.state not in ACTIVE:
                break
        process.join(STOP_WAIT_S)
        if fit.state in ACTIVE:
            fit.state, fit.error = "error", f"the fit stopped unexpectedly (exit code {process.exitcode})"


def _as_uploaded(message: str, painting: Path, name: str) -> str:
    """A message about the saved painting as the user knows it: their file's name, not the server's path."""
    return message.replace(str(painting), name).replace(painting.name, name)


def _last_style(path: Path) -> str:
    from fastnst.core.modelfile import read_metadata

    return read_metadata(path).styles[-1]


def _die_with(parent: int) -> None:
    """End this process when ``parent`` does, however it ends (``kill -9`` included): the kernel's parent-death
    signal where there is one (Linux), and a watcher thread everywhere (re-parented: the parent is gone)."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="fastnst-parent-watch").start()


def _child(painting: Path, base: Path, options: FitOptions, photo: bytes | None, events: Any, cancel: Any,
           parent: int) -> None:
    """The child process: fit (or find in the cache) and report. One PyTorch thread, the app keeps the rest."""
    _die_with(parent)
    import torch
    from PIL import Image

    from fastnst.core.images import decode_image
    from fastnst.inference.fitting import FitCancelled, cached_style

    torch.set_num_threads(1)
    try:
        source = decode_image(photo, "the preview photo") if photo else Image.open(PHOTO_DIR / "chelsea_cat.jpg")
        source = source.convert("RGB")
        source.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    except FastNSTError:
        source = Image.open(PHOTO_DIR / "chelsea_cat.jpg").convert("RGB")
    last = [0.0]

    def progress(p: Any, paint: Any) -> None:
        events.put(("progress", (p.step, p.steps, p.loss, p.eta)))
        now = time.monotonic()
        if now - last[0] >= PREVIEW_EVERY_S or p.step == p.steps:
            last[0] = now
            buffer = io.BytesIO()
            paint(source).save(buffer, format="JPEG", quality=LIVE_QUALITY)
            events.put(("preview", buffer.getvalue()))

    try:
        path, _ = cached_style(painting, base, options, on_progress=progress, cancel=cancel.is_set,
                               on_wait=lambda: events.put(("waiting", "another fit of this painting is running")))
        events.put(("done", str(path)))
    except FitCancelled:
        events.put(("cancelled", "cancelled"))
    except FastNSTError as err:
        events.put(("error", str(err)))
    except Exception as err:  # a bug: reported, not a silent death
        events.put(("error", f"the fit failed ({err.__class__.__name__}: {err})"))
