"""A real WebSocket client (the ``websockets`` library) for end-to-end tests."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import connect as _connect
from websockets.exceptions import InvalidStatus

__all__ = ["InvalidStatus", "connect", "recv_json", "refusal_status"]


def connect(server: Any, path: str, *, host: str | None = None, **kwargs: Any):
    """Connect to ``server`` (a ServerProcess) at ``path``; ``host`` sets the Host header
    (e.g. ``"tenant1.localhost:8000"``) while the TCP connection still goes to 127.0.0.1."""
    if host:
        uri = f"ws://{host}{path}"
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", server.port)
    else:
        uri = f"{server.url}{path}"
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 5)
    return _connect(uri, **kwargs)


async def refusal_status(server: Any, path: str, **kwargs: Any) -> tuple[int, bytes]:
    """Open a handshake that must be refused; return the HTTP status and body the client saw."""
    try:
        async with connect(server, path, **kwargs):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.body or b""
    raise AssertionError(f"handshake to {path} was accepted, expected a refusal")


async def recv_json(ws: Any) -> Any:
    return json.loads(await ws.recv())
