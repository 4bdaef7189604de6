"""The web app under hostile or careless clients: chunked uploads past the limit, other sites' pages,
foreign Host names, settings that are JSON but not an object, abandoned sockets, killed apps."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web app needs the [app] extra: pip install -e '.[app]'")

from live_app import LiveApp, served  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> LiveApp:
    yield from served(tmp_path_factory)


def port(app: LiveApp) -> int:
    return int(app.url.rsplit(":", 1)[1])


def raw(app: LiveApp, method: str, path: str, headers: dict[str, str], body: bytes | None = None,
        chunks: int = 0, chunk: bytes = b"") -> tuple[int, dict]:
    """A request with exactly these headers; ``chunks`` pieces of ``chunk`` sent chunked, no length."""
    conn = http.client.HTTPConnection("127.0.0.1", port(app), timeout=60)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        if chunks:
            conn.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        try:
            if chunks:
                for _ in range(chunks):
                    conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.send(b"0\r\n\r\n")
            elif body is not None:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused before the end, as it should
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_a_chunked_upload_is_stopped_at_the_limit(app: LiveApp, monkeypatch) -> None:
    from fastnst.app import server

    monkeypatch.setattr(server, "MAX_MODEL_BYTES", 1 << 20)  # a 1 MB limit, so the test sends ~2 MB
    host = f"127.0.0.1:{port(app)}"
    head = b'--b\r\nContent-Disposition: form-data; name="model"; filename="m.safetensors"\r\n\r\n'
    start = time.monotonic()
    status, body = raw(app, "POST", "/api/models", {"Host": host, "Content-Type": "multipart/form-data; boundary=b"},
                       chunks=32, chunk=head + b"x" * (64 << 10))
    assert status == 400 and "over the limit" in body["error"] and "1 MB" in body["error"]
    assert time.monotonic() - start < 30


def test_an_endless_chunked_upload_is_answered_and_closed_at_the_limit(app: LiveApp, monkeypatch) -> None:
    # The reply must come while the client is still sending, and the server must close the connection rather
    # than read the rest (it used to accept 700 MB before replying).
    import select
    import socket

    from fastnst.app import server

    monkeypatch.setattr(server, "MAX_IMAGE_BYTES", 1 << 20)
    sock = socket.create_connection(("127.0.0.1", port(app)), timeout=30)
    sock.sendall(b"POST /api/stylize HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Type: multipart/form-data; boundary=b\r\n\r\n" % port(app))
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n\r\n'
    piece = b"x" * (64 << 10)
    sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
    sent, reply = 0, b""
    try:
        while sent < 256 << 20:  # 256 MB at most: far past anything a buffer holds
            readable, writable, _ = select.select([sock], [sock], [], 5)
            if readable:
                reply = sock.recv(65536)
                break
            if writable:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(10)
    while not reply.endswith(b"}"):
        more = sock.recv(65536)
        if not more:
            break
        reply += more
    assert reply.startswith(b"HTTP/1.1 400") and b"connection: close" in reply.lower(), reply[:300]
    assert b"over the limit" in reply
    assert sent < 64 << 20, f"{sent >> 20} MB were taken before the reply"
    try:  # closed by the server: an orderly end, or a reset when our unread upload was still in its buffer
        assert sock.recv(65536) == b""
    except ConnectionResetError:
        pass
    sock.close()


@pytest.mark.parametrize("headers, status", [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Host": "evil.example"}, 403),  # DNS rebinding: the page's own host name, pointing here
    ({"Host": "evil.example", "Origin": "http://evil.example"}, 403),
    ({}, 200),
    ({"Origin": "SELF"}, 200),
    ({"Host": "localhost:PORT"}, 200),
])
def test_other_sites_and_unknown_hosts_are_refused(app: LiveApp, headers: dict, status: int) -> None:
    own = f"127.0.0.1:{port(app)}"
    sent = {"Host": own, **{k: v.replace("SELF", f"http://{own}").replace("PORT", str(port(app)))
                            for k, v in headers.items()}}
    got, body = raw(app, "GET", "/api/models", sent)
    assert got == status
    if status == 403:
        assert "refused" in body["error"] or "unknown Host" in body["error"]


def test_a_foreign_page_cannot_open_the_webcam_socket(app: LiveApp) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(app.url.replace("http", "ws") + "/ws/webcam", origin="http://evil.example", open_timeout=30)
    assert refused.value.response.status_code == 403
    with connect(app.url.replace("http", "ws") + "/ws/webcam", origin=app.url, open_timeout=30) as ws:
        ws.send(json.dumps({"model": "tiny"}))
        assert json.loads(ws.recv(timeout=30))["ok"]


@pytest.mark.parametrize("text", ["[]", "null", "1", '"x"'])
def test_settings_that_are_not_an_object_get_a_message(app: LiveApp, text: str) -> None:
    from websockets.sync.client import connect

    with connect(app.url.replace("http", "ws") + "/ws/webcam") as ws:
        ws.send(text)
        assert json.loads(ws.recv(timeout=30))["error"] == "settings must be a JSON object"
        ws.send(json.dumps({"model": "tiny"}))  # the socket is still open and usable
        assert json.loads(ws.recv(timeout=30))["ok"]


def test_a_full_queue_whose_reader_died_does_not_block() -> None:
    from fastnst.app.server import put_unless_done

    async def scenario() -> tuple[bool, bool, bool]:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        await queue.put(asyncio.get_running_loop().create_future())

        async def reader_that_dies() -> None:
            raise ConnectionError("the client went away")

        reader = asyncio.create_task(reader_that_dies())
        item = asyncio.get_running_loop().create_future()
        ok = await asyncio.wait_for(put_unless_done(queue, item, reader), timeout=5)
        alive = asyncio.create_task(asyncio.sleep(10))
        queue.get_nowait()
        fine = await put_unless_done(queue, asyncio.get_running_loop().create_future(), alive)
        alive.cancel()
        return ok, item.cancelled(), fine

    ok, cancelled, fine = asyncio.run(scenario())
    assert not ok and cancelled and fine


def test_a_killed_apps_folder_is_removed_at_the_next_start(tmp_path: Path) -> None:
    """A running app holds the lock in its folder; a killed one's lock is free and its folder goes."""
    from fastnst.app.server import WORKDIR_LOCK, WORKDIR_PREFIX, remove_stale_workdirs

    stale = tmp_path / f"{WORKDIR_PREFIX}killed"
    (stale / "spool").mkdir(parents=True)
    (stale / "spool" / "upload").write_bytes(b"x" * 100)
    (stale / WORKDIR_LOCK).touch()
    running = tmp_path / f"{WORKDIR_PREFIX}running"
    running.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, filelock; l = filelock.FileLock(sys.argv[1]); "
                               "l.acquire(); print('held', flush=True); sys.stdin.read()", str(running / WORKDIR_LOCK)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        just_made = tmp_path / f"{WORKDIR_PREFIX}starting"  # no lock file yet: an app that is starting
        just_made.mkdir()
        old = tmp_path / f"{WORKDIR_PREFIX}old"  # no lock file for an hour: no app's
        old.mkdir()
        os.utime(old, (time.time() - 3600, time.time() - 3600))
        other = tmp_path / "someone-else"
        other.mkdir()
        assert sorted(remove_stale_workdirs(tmp_path)) == sorted([stale, old])
        assert not stale.exists() and running.is_dir() and just_made.is_dir() and other.is_dir()
    finally:
        holder.communicate("")
    assert remove_stale_workdirs(tmp_path) == [running]  # its holder has ended


def test_handlers_can_be_called_without_a_server(tmp_path: Path) -> None:
    """The routes are methods of `Handlers`: a test reaches one without uvicorn or HTTP."""
    from fastnst.app.models import ModelBook
    from fastnst.app.server import Handlers
    from fastnst.core.errors import FastNSTError

    from samples import tiny_model

    book = ModelBook([tiny_model(tmp_path / "m" / "ink.safetensors")], tmp_path, device="cpu", engine="torch")
    handlers = Handlers(book, tmp_path)
    chosen = handlers.settings({"model": "ink", "strength": "0.5", "size": "512", "preserve_color": "on"})
    assert chosen.model == "ink" and chosen.options.strength == 0.5 and chosen.options.max_size == 512
    assert chosen.options.preserve_color
    with pytest.raises(FastNSTError, match="no model 'nope'"):
        handlers.settings({"model": "nope"})
