"""Who may talk to the app: only its own page, under a name it is served by.

A page on any other site can send requests to 127.0.0.1 from the user's browser (forms and WebSockets
are not stopped by the same-origin policy), and with DNS rebinding it can even read the answers under
its own host name. So every request must name a Host the app serves (the address it listens on, or
localhost; any name when it listens on all interfaces), and a request from a page (one with an
Origin header) must come from that same host and port.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WILDCARD = {"0.0.0.0", "::", ""}


def host_name(authority: str) -> str:
    """'example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'."""
    return (urllib.parse.urlsplit(f"//{authority}").hostname or "").lower()


def refusal(headers: dict[bytes, bytes], listen_host: str) -> str | None:
    """Why a request with these headers is refused, or None. ``listen_host``: what ``--host`` names."""
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    if listen_host not in WILDCARD and host_name(host) not in LOOPBACK | {listen_host.lower()}:
        return f"unknown Host {host!r}: open the app at the address it printed"
    origin = headers.get(b"origin")
    if origin is not None:
        parts = urllib.parse.urlsplit(origin.decode("latin-1").strip().lower())
        if parts.scheme not in ("http", "https") or parts.netloc != host:
            return "requests from other sites are refused"
    return None


class SameOrigin:
    """ASGI middleware: 403 (HTTP) or a refused handshake (WebSocket) for foreign Hosts and Origins."""

    def __init__(self, app: ASGIApp, listen_host: str) -> None:
        self.app, self.listen_host = app, listen_host

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] in ("http", "websocket"):
            reason = refusal(dict(scope.get("headers", [])), self.listen_host)
            if reason is not None:
                if scope["type"] == "websocket":
                    await receive()  # websocket.connect
                    await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
                    return
                body = json.dumps({"error": reason}).encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
