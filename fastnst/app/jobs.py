"""Video jobs: an uploaded clip stylized in the background by the CLI's video code, one clip at a time
(two at once would only share the same cores), with progress the page polls."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastnst.core.errors import FastNSTError
from fastnst.inference.stylizer import StylizeOptions, Stylizer
from fastnst.inference.video import DEFAULT_CODECS, stylize_video

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised from the progress callback to stop a running clip when the app shuts down."""


@dataclass
class VideoJob:
    id: str
    source: Path
    target: Path
    name: str  # the uploaded file's name, which messages use instead of the work folder's
    download_name: str
    state: str = "queued"  # queued -> running -> done | error
    frames: int = 0
    total: int = 0
    error: str = ""
    warning: str = ""  # a clip that was only partly read is "done", with this said in the page

    def status(self) -> dict:
        return {"id": self.id, "state": self.state, "frames": self.frames, "total": self.total,
                "error": self.error, "warning": self.warning}


class VideoJobs:
    """Runs submitted clips in one worker thread. Each job lives in its own folder of ``workdir``; the
    upload is deleted as soon as its clip is done."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._jobs: dict[str, VideoJob] = {}
        self._queue: queue.Queue[tuple[VideoJob, Callable[[], Stylizer], StylizeOptions] | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="fastnst-video", daemon=True)
        self._thread.start()

    def folder(self) -> tuple[str, Path]:
        """A fresh job id and its folder, for the upload to be written into."""
        job_id = uuid.uuid4().hex[:16]
        folder = self.workdir / "videos" / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def submit(self, job_id: str, source: Path, name: str, stylizer: Callable[[], Stylizer],
               options: StylizeOptions, label: str) -> VideoJob:
        """Queue ``source`` (already in the job's folder). The output keeps the clip's container where
        fastnst writes it, else MP4, so that a browser can play it."""
        ext = source.suffix.lower() if source.suffix.lower() in DEFAULT_CODECS and source.suffix.lower() != ".gif" \
            else ".mp4"
        job = VideoJob(job_id, source, source.with_name(f"result{ext}"), name, f"{Path(name).stem}_{label}{ext}")
        self._jobs[job_id] = job
        self._queue.put((job, stylizer, options))
        return job

    def get(self, job_id: str) -> VideoJob:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise FastNSTError(f"no video job {job_id!r} (the app was restarted?)") from None

    def close(self) -> None:
        """Stop the worker, cancelling a clip in progress (its partial output is removed)."""
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            job, stylizer, options = item
            if self._stop.is_set():
                return
            job.state = "running"
            try:
                report = stylize_video(stylizer(), job.source, job.target, options, progress=self._progress(job))
                job.warning = report.warning or ""
                job.state = "done"
            except Cancelled:
                return
            except FastNSTError as err:
                job.error, job.state = str(err).replace(str(job.source), job.name), "error"
            except Exception as err:  # the page gets a message, the server keeps serving
                log.exception("video job %s failed", job.id)
                job.error, job.state = f"the video could not be stylized ({err.__class__.__name__}: {err})", "error"
            finally:
                job.source.unlink(missing_ok=True)

    def _progress(self, job: VideoJob) -> Callable[[int, int], None]:
        def report(frames: int, total: int) -> None:
            if self._stop.is_set():
                raise Cancelled
            job.frames, job.total = frames, max(total, frames)
        return report
