"""The web app's server: a Starlette (ASGI) app serving one hand-written page and a small HTTP API.

    GET  /api/models                 the models and their styles
    POST /api/models                 add an uploaded model file (form field ``model``)
    POST /api/stylize                a photo (``image``) -> the stylized image; ``size=full`` for a download
    WS   /ws/webcam                  JSON settings, then JPEG frames in -> [uint32 server µs][JPEG] out,
                                     in order; errors as {"error": "...", "frame": true if a frame's}
    POST /api/videos                 a clip (``video``) -> a job; GET /api/videos/ID its progress,
    GET  /api/videos/ID/result       and the stylized clip
    POST /api/styles                 a painting (``painting``; ``base`` a model id, ``photo`` for the preview)
                                     -> a fit; GET /api/styles/ID its progress, /preview the latest preview,
    POST /api/styles/ID/cancel       stops it; when done, the new model is in /api/models
    GET  /api/models/ID/file         a model's file (a fitted style, to keep)

Options are form fields: ``model``, ``style`` (a name or ``a:0.7,b:0.3``), ``strength``, ``preserve_color``,
``size`` (long side in px, or ``full``). Errors are ``{"error": "..."}`` with status 400 (the user's input)
or 500 (a bug; logged); the server keeps serving. Uploads and results go to one temporary folder, removed
when the app stops; fitted styles go to the user's cache (``~/.cache/fastnst/fitted``, shared with the CLI).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import shutil
import socket
import struct
import tempfile
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from fastnst.app.fits import LIVE_QUALITY, StyleFit, StyleFits
from fastnst.app.guard import SameOrigin
from fastnst.app.jobs import VideoJobs
from fastnst.app.models import LIVE_STREAMS, ModelBook
from fastnst.core.device import resolve_device
from fastnst.core.errors import FastNSTError
from fastnst.core.images import MAX_IMAGE_PIXELS, decode_image
from fastnst.core.locks import try_lock
from fastnst.inference.engines import openvino_available
from fastnst.inference.fitting import FitOptions
from fastnst.inference.stylizer import StylizeOptions

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
MB = 1 << 20
MAX_IMAGE_BYTES = 100 * MB  # a 120-Mpx JPEG fits; the pixel limit is what protects memory
MAX_MODEL_BYTES = 64 * MB  # a `johnson` stylizer is 6.7 MB in fp32
MAX_VIDEO_BYTES = 2048 * MB
WEBCAM_MAX_PIXELS = 1920 * 1080
DISCONNECT_POLL_S = 0.5  # how often a running photo request checks that its client is still there
CANCEL_TILE = 1024  # photos over 4x this squared run in tiles, each a point where a departed client stops them
PREVIEW_QUALITY = 90
DEFAULT_MODEL = "starry_night"
MAX_FIT_STEPS = 5000
FIT_BASE = "multistyle"  # what "Add a style" grows unless the page names another model
WORKDIR_PREFIX = "fastnst-app-"  # a killed app's folder is recognised by this and its free lock, and removed
WORKDIR_LOCK = ".in-use"  # held by the app for its lifetime (core/locks.py): the OS frees it when the app dies
UNLOCKED_GRACE_S = 60  # a folder with no lock file this old is no app's: one locks its folder as it makes it


@dataclass(frozen=True)
class Settings:
    model: str
    options: StylizeOptions


class Handlers:
    """The app's request handlers over ``book``'s models, as methods a test can call one by one. Video
    uploads and results go under ``workdir``."""

    def __init__(self, book: ModelBook, workdir: Path, fit_options: FitOptions | None = None) -> None:
        self.book = book
        self.jobs = VideoJobs(workdir)
        self.fits = StyleFits(workdir, fit_options or FitOptions(), self._fitted)
        self.photo_lock = asyncio.Lock()  # one photo at a time: two at once would only share the cores

    def settings(self, fields: FormData | dict) -> Settings:
        """Form fields or a webcam settings message -> what to stylize with, checked (bad values raise)."""
        model = str(fields.get("model") or default_model(self.book))
        size = str(fields.get("size") or "full")
        try:
            strength = float(fields.get("strength", 1.0))
            max_size = None if size in ("full", "0") else int(size)
        except (TypeError, ValueError):
            raise FastNSTError("strength must be a number and size a number of pixels or 'full'") from None
        preserve = str(fields.get("preserve_color", "")).lower() in ("1", "true", "on", "yes")
        style = fields.get("style") or None
        options = StylizeOptions(max_size=max_size, strength=strength, preserve_color=preserve,
                                 style=str(style) if style else None)
        self.book.check(model)
        return Settings(model, options)

    async def index(self, request: Request) -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    async def list_models(self, request: Request) -> JSONResponse:
        book = self.book
        return JSONResponse({"models": [book.describe(i) for i in book.ids()], "default": default_model(book)})

    async def add_model(self, request: Request) -> JSONResponse:
        form = await read_form(request, MAX_MODEL_BYTES)
        upload = form_file(form, "model", "a model file")
        data = await upload.read()
        model_id = await run_in_threadpool(self.book.upload, upload.filename or "model.safetensors", data)
        return JSONResponse(self.book.describe(model_id))

    async def stylize(self, request: Request) -> Response:
        form = await read_form(request, MAX_IMAGE_BYTES)
        upload = form_file(form, "image", "a photo")
        data = await upload.read()
        chosen = self.settings(form)
        async with self.photo_lock:
            if await request.is_disconnected():  # the page has asked for something newer already
                return Response(status_code=204)
            gone = threading.Event()
            work = asyncio.ensure_future(run_in_threadpool(
                stylize_photo, self.book, chosen, data, upload.filename or "photo", gone))
            # A client that leaves mid-photo stops the work at the next tile (a huge image would otherwise hold
            # the lock for minutes), and the next request runs.
            while not (await asyncio.wait({work}, timeout=DISCONNECT_POLL_S))[0]:
                if await request.is_disconnected():
                    gone.set()
            try:
                body, media, name, ms, engine = await work
            except ClientGone:
                log.info("a client left before its photo was done: stopped")
                return Response(status_code=204)
        headers = {"X-Fastnst-Ms": f"{ms:.0f}", "X-Fastnst-Engine": engine,
                   "Cache-Control": "no-store"}
        if chosen.options.max_size is None:
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}"
        return Response(body, media_type=media, headers=headers)

    async def webcam(self, ws: WebSocket) -> None:
        await ws.accept()
        chosen = None
        frames: asyncio.Queue = asyncio.Queue(maxsize=2 * LIVE_STREAMS)  # tasks, replied to in arrival order
        replies = asyncio.create_task(send_in_order(ws, frames))
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    if message.get("text") is not None:
                        chosen = await self.webcam_settings(ws, message["text"])
                    elif message.get("bytes") is not None:
                        if chosen is None:
                            raise FastNSTError("send the settings before the first frame")
                        # Frames run concurrently (the live stylizer takes LIVE_STREAMS at once).
                        frame = asyncio.ensure_future(run_in_threadpool(stylize_frame, self.book, chosen,
                                                                        message["bytes"]))
                        if not await put_unless_done(frames, frame, replies):
                            return  # the replies stopped (the client went away without reading)
                except FastNSTError as err:  # refused settings leave the frames on the last good ones
                    await ws.send_json({"error": str(err), "frame": message.get("bytes") is not None})
        except WebSocketDisconnect:
            return
        finally:
            replies.cancel()
            while not frames.empty():  # frames nobody will read: not stylized for nothing
                frames.get_nowait().cancel()

    async def webcam_settings(self, ws: WebSocket, text: str) -> Settings:
        """A settings message -> the settings the next frames use, after loading their model (acknowledged)."""
        try:
            fields = json.loads(text)
        except json.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict):
            raise FastNSTError("settings must be a JSON object")
        wanted = self.settings({**fields, "size": "full"})
        stylizer = await run_in_threadpool(self.book.stylizer, wanted.model, True)
        stylizer.style_weights(wanted.options.style)  # a bad style is refused now, once
        await ws.send_json({"ok": True, "engine": stylizer.engine})
        return wanted

    async def submit_video(self, request: Request) -> JSONResponse:
        form = await read_form(request, MAX_VIDEO_BYTES)
        upload = form_file(form, "video", "a video clip")
        chosen = self.settings(form)
        book = self.book
        stylizer = await run_in_threadpool(book.stylizer, chosen.model)
        label = stylizer.style_label(chosen.options.style)  # checks the style before the clip is queued
        name = Path(upload.filename or "clip.mp4").name
        job_id, folder = self.jobs.folder()
        source = folder / f"input{Path(name).suffix.lower()[:8]}"
        await run_in_threadpool(copy_upload, upload, source)
        job = self.jobs.submit(job_id, source, name, lambda: book.stylizer(chosen.model), chosen.options, label)
        return JSONResponse({**job.status(), "result": f"/api/videos/{job.id}/result"})

    async def video_status(self, request: Request) -> JSONResponse:
        return JSONResponse(self.jobs.get(request.path_params["job"]).status())

    async def video_result(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job"])
        if job.state != "done":
            raise FastNSTError(f"the video is not ready ({job.state})")
        return FileResponse(job.target, filename=job.download_name)

    async def add_style(self, request: Request) -> JSONResponse:
        form = await read_form(request, MAX_IMAGE_BYTES, max_files=2)
        upload = form_file(form, "painting", "a painting")
        data = await upload.read()
        base = str(form.get("base") or (FIT_BASE if FIT_BASE in self.book.ids() else default_model(self.book)))
        self.book.check(base)
        photo = form.get("photo")
        preview = await photo.read() if isinstance(photo, UploadFile) else None
        steps = str(form.get("steps") or "")
        if steps and not (steps.isascii() and steps.isdigit() and 1 <= int(steps) <= MAX_FIT_STEPS):  # not "²"
            raise FastNSTError(f"steps must be a whole number from 1 to {MAX_FIT_STEPS}")
        fit = await run_in_threadpool(self.fits.start, upload.filename or "painting.png", data,
                                      self.book.path(base), base, preview, int(steps) if steps else None)
        return JSONResponse(fit.status())

    async def style_status(self, request: Request) -> JSONResponse:
        return JSONResponse(self.fits.get(request.path_params["fit"]).status())

    async def style_preview(self, request: Request) -> Response:
        fit = self.fits.get(request.path_params["fit"])
        if not fit.preview:
            raise FastNSTError("no preview yet")
        return Response(fit.preview, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def cancel_style(self, request: Request) -> JSONResponse:
        return JSONResponse(self.fits.cancel(request.path_params["fit"]).status())

    async def model_file(self, request: Request) -> Response:
        model_id = request.path_params["model"]
        path = self.book.path(model_id)
        return FileResponse(path, filename=f"{model_id}{path.suffix}")

    def _fitted(self, path: Path, fit: StyleFit) -> str:
        return self.book.add_fitted(path, Path(fit.name).stem)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Load the default model while the page opens (an OpenVINO conversion takes seconds once).
        threading.Thread(target=warm_up, args=(self.book,), daemon=True).start()
        yield
        await run_in_threadpool(self.fits.close)
        await run_in_threadpool(self.jobs.close)


def create_app(book: ModelBook, workdir: Path, host: str = "127.0.0.1",
               fit_options: FitOptions | None = None) -> Starlette:
    """The ASGI app over ``book``'s models; uploads and results go under ``workdir``. ``host``: the
    address it listens on; requests naming another Host, or from another site's page, are refused.
    ``fit_options``: how "Add a style" fits a painting."""
    h = Handlers(book, workdir, fit_options)
    routes = [Route("/", h.index), Route("/api/models", h.list_models),
              Route("/api/models", h.add_model, methods=["POST"]), Route("/api/stylize", h.stylize, methods=["POST"]),
              WebSocketRoute("/ws/webcam", h.webcam), Route("/api/videos", h.submit_video, methods=["POST"]),
              Route("/api/videos/{job}", h.video_status), Route("/api/videos/{job}/result", h.video_result),
              Route("/api/styles", h.add_style, methods=["POST"]), Route("/api/styles/{fit}", h.style_status),
              Route("/api/styles/{fit}/preview", h.style_preview),
              Route("/api/styles/{fit}/cancel", h.cancel_style, methods=["POST"]),
              Route("/api/models/{model}/file", h.model_file),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    handlers = {FastNSTError: user_error, Exception: server_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=h.lifespan,  # type: ignore[arg-type]
                     middleware=[Middleware(SameOrigin, listen_host=host)])


def default_model(book: ModelBook) -> str:
    ids = book.ids()
    if not ids:
        raise FastNSTError("no models: give model files with --models (no starter models are installed)")
    return DEFAULT_MODEL if DEFAULT_MODEL in ids else ids[0]


def warm_up(book: ModelBook) -> None:
    try:
        book.stylizer(default_model(book))
        book.stylizer(default_model(book), live=True)  # its INT8 graph is made once, then cached
    except Exception as err:  # the first request will report it properly
        log.warning("could not load the default model: %s", err)


class _TooLarge(Exception):
    pass


async def read_form(request: Request, limit: int, max_files: int = 1) -> FormData:
    """The multipart form, refused as soon as more than ``limit`` bytes have arrived: a declared
    Content-Length is checked first, and the bytes are counted as they come, since a chunked upload
    declares none (uncounted, a chunked upload could fill the disk)."""
    length = request.headers.get("content-length", "")
    too_large = f"the upload is over the limit here, {limit // MB} MB"
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise UploadRefused(f"the upload is {int(length) / MB:.0f} MB; the limit here is {limit // MB} MB")
    received = 0
    receive = request.receive

    async def counted() -> dict:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge
        return message

    bounded = Request(request.scope, counted)
    try:
        form = await bounded.form(max_files=max_files, max_fields=20)
    except _TooLarge:
        raise UploadRefused(too_large) from None
    except (MultiPartException, HTTPException, ValueError, UnicodeDecodeError) as err:  # a malformed body
        raise UploadRefused(f"could not read the upload ({getattr(err, 'detail', None) or err})") from None
    return form


def form_file(form: FormData, field: str, what: str) -> UploadFile:
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise FastNSTError(f"choose {what} to upload")
    return upload


def copy_upload(upload: UploadFile, target: Path) -> None:
    upload.file.seek(0)
    with open(target, "wb") as out:
        shutil.copyfileobj(upload.file, out, 4 * MB)


class ClientGone(Exception):
    """The client of a photo request went away: its work is abandoned."""


def stylize_photo(book: ModelBook, chosen: Settings, data: bytes, filename: str,
                  gone: threading.Event | None = None) -> tuple[bytes, str, str, float, str]:
    """-> (encoded image, media type, download name, milliseconds spent stylizing, engine).
    ``gone`` set: raise ClientGone at the next tile (large photos are tiled so that it comes soon)."""
    stylizer = book.stylizer(chosen.model)
    label = stylizer.style_label(chosen.options.style)
    image = decode_image(data, filename, MAX_IMAGE_PIXELS, chosen.options.max_size)
    options = chosen.options
    if options.tile is None and image.width * image.height > CANCEL_TILE ** 2 * 4:
        options = dataclasses.replace(options, tile=CANCEL_TILE)

    def cancel() -> None:
        if gone is not None and gone.is_set():
            raise ClientGone

    start = time.perf_counter()
    result = stylizer.stylize(image, options, cancel)
    ms = (time.perf_counter() - start) * 1000
    full = chosen.options.max_size is None
    # Previews as JPEG (fast to encode and send); downloads keep the photo's format where it is lossy
    # anyway, PNG otherwise; alpha forces PNG.
    if result.mode == "RGBA":
        fmt = "PNG"
    elif not full:
        fmt = "JPEG"
    else:
        fmt = image.format if image.format in ("JPEG", "WEBP") else "PNG"
    buffer = io.BytesIO()
    result.save(buffer, format=fmt, **({"quality": 95 if full else PREVIEW_QUALITY} if fmt != "PNG" else {}))
    ext = {"JPEG": ".jpg", "WEBP": ".webp", "PNG": ".png"}[fmt]
    return buffer.getvalue(), Image.MIME[fmt], f"{Path(filename).stem}_{label}{ext}", ms, stylizer.engine


async def put_unless_done(queue: asyncio.Queue, item: asyncio.Future, worker: asyncio.Task) -> bool:
    """Queue ``item`` for ``worker``; False (item cancelled) if the worker ends first. A plain ``put``
    on a full queue whose consumer has died waits forever, and kept the app from stopping on Ctrl+C."""
    put = asyncio.ensure_future(queue.put(item))
    await asyncio.wait({put, worker}, return_when=asyncio.FIRST_COMPLETED)
    if put.done():
        return True
    put.cancel()
    item.cancel()
    return False


async def send_in_order(ws: WebSocket, frames: asyncio.Queue) -> None:
    """Each stylized webcam frame as [uint32 server µs][JPEG], or an error message, in arrival order."""
    while True:
        task = await frames.get()
        try:
            us, body = await task
        except FastNSTError as err:
            await ws.send_json({"error": str(err), "frame": True})
            continue
        except Exception as err:  # a bug: logged, and the page keeps its count of frames in flight right
            log.error("a webcam frame failed", exc_info=err)
            await ws.send_json({"error": f"internal error ({err.__class__.__name__}); see the server's log",
                                "frame": True})
            continue
        await ws.send_bytes(struct.pack("<I", us) + body)


def stylize_frame(book: ModelBook, chosen: Settings, data: bytes) -> tuple[int, bytes]:
    """A webcam frame (JPEG bytes) -> (microseconds on the server, the stylized frame as JPEG)."""
    start = time.perf_counter()
    image = decode_image(data, "the webcam frame", WEBCAM_MAX_PIXELS)
    result = book.stylizer(chosen.model, live=True).stylize(image, chosen.options)
    buffer = io.BytesIO()
    result.convert("RGB").save(buffer, format="JPEG", quality=LIVE_QUALITY)
    return round((time.perf_counter() - start) * 1e6), buffer.getvalue()


class UploadRefused(FastNSTError):
    """An upload refused while it arrives (over its limit, or malformed): answered at once, and the connection
    closed rather than read to the end."""


async def user_error(request: Request, err: Exception) -> JSONResponse:
    close = {"Connection": "close"} if isinstance(err, UploadRefused) else None
    return JSONResponse({"error": str(err)}, status_code=400, headers=close)


async def server_error(request: Request, err: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=err)
    return JSONResponse({"error": f"internal error ({err.__class__.__name__}); see the server's log"},
                        status_code=500)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), so the address can be printed before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise FastNSTError(f"cannot listen on {host}:{port} ({err.strerror or err})", param="port") from None
    sock.listen(128)
    return sock


def remove_stale_workdirs(root: Path) -> list[Path]:
    """Remove the folders of apps that were killed (``kill -9`` skips the clean-up): a running app holds the
    lock in its folder, so a folder whose lock is free is an ended app's. Returns what was removed."""
    removed = []
    for folder in root.glob(f"{WORKDIR_PREFIX}*"):
        if not folder.is_dir() or not _abandoned(folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _abandoned(folder: Path) -> bool:
    lock_file = folder / WORKDIR_LOCK
    if not lock_file.exists():  # being made just now, or left by a version that kept no lock
        return time.time() - folder.stat().st_mtime > UNLOCKED_GRACE_S
    lock = try_lock(lock_file)
    if lock is None:
        return False
    lock.release()
    return True


def serve(models: list[Path], host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          engine: str | None = None, fit_options: FitOptions | None = None) -> None:
    """Run the app until interrupted. Uploads and results live in one temporary folder, removed at the end; fitted
    styles are kept in the user's cache (docs/app.md)."""
    import uvicorn

    remove_stale_workdirs(Path(tempfile.gettempdir()))
    # Starlette spools uploads over 1 MB to anonymous temporary files (unlinked when made): nothing to
    # clean there, so the process-wide tempfile.tempdir is left alone.
    with tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX) as tmp:
        workdir = Path(tmp)
        in_use = try_lock(workdir / WORKDIR_LOCK)  # released by the OS if this process is killed
        resolve_device(device)  # an unavailable device or engine fails the start, not the first photo
        if engine == "openvino" and not openvino_available():
            raise FastNSTError("the openvino engine is not installed (pip install openvino)", param="engine")
        book = ModelBook(models, workdir, device, engine)
        default_model(book)
        sock = listen(host, port)
        shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        print(f"fastnst app: http://{shown}:{sock.getsockname()[1]}/  (Ctrl+C stops it)", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: listening on {host}: anyone who can reach this machine can use the app "
                  "and upload files to it", flush=True)
        config = uvicorn.Config(create_app(book, workdir, host, fit_options), log_level="warning", ws_max_size=16 * MB)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after its graceful shutdown: a normal end
            pass
        print("fastnst app: stopped", flush=True)
        if in_use is not None:
            in_use.release()
