"""The transport a connection writes to: plain ASGI here, server-specific bridges in rockstar_ws.servers.

The connection, the guard and the refusal code talk to a :class:`ServerBridge`; what daphne and
uvicorn add beyond plain ASGI (close reasons, buffer sizes, aborting, real refusal statuses) is in
subclasses that rockstar_ws.servers.bridges picks for the server at hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Send", "ServerBridge"]

Send = Callable[[dict[str, Any]], Awaitable[None]]


class ServerBridge:
    """Plain ASGI: close with a message, no buffer insight, refusals as refusals.py sends them."""

    name = "asgi"
    #: True when a close must wait for the client to stop sending (see :meth:`linger`).
    lingers = False
    #: True when the server's ``receive`` may be awaited by the handler's task and cancelled
    #: without losing a message (daphne's and uvicorn's are ``asyncio.Queue.get``): the pump
    #: then parks and lets a waiting reader receive for itself (engine/consumer.py).
    direct_receive = False

    def __init__(self, send: Send) -> None:
        self.send = send

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame with ``code`` and ``reason``."""
        message: dict[str, Any] = {"type": "websocket.close", "code": code}
        if reason:
            message["reason"] = reason
        await self.send(message)

    async def close_or_drop(self, code: int, reason: str = "", wait: float = 1.0) -> None:
        """Close; when the close frame cannot be written within ``wait`` seconds (it queues
        behind data a client does not read) drop the TCP connection where the server allows it."""
        try:
            async with asyncio.timeout(wait):
                await self.close(code, reason)
        except TimeoutError:
            self.abort()

    async def linger(self, conn: Any, limit: float) -> None:
        """Wait before a close until the client has paused sending (no-op on most servers)."""

    def buffered_bytes(self) -> int:
        """Bytes written to this client that the server has not sent yet (0 when unknown)."""
        return 0

    def direct_writer(self) -> Callable[[bool, str | bytes], bool] | None:
        """``write(binary, data) -> bool`` that writes one message without the server's ``send``
        when it can (True), or None when this server has no such path. A False from it means
        nothing was written: the message goes through ``send`` as usual."""
        return None

    def frame_writer(self) -> Callable[[Any, int], int] | None:
        """``write(prepared, limit) -> int`` that writes a frame prepared once for many clients
        (autobahn's ``PreparedMessage``) without queueing: 0 written, -1 not open, else the bytes
        held unsent over ``limit`` (nothing written). None when this server has no such path:
        fan-outs then queue messages for the server's ``send``."""
        return None

    def write_ready(self, limit: int) -> Callable[[], bool] | None:
        """A check, cheap enough to run before every write, that is True when a send now would
        neither wait (the server's send does not block) nor leave more than ``limit`` bytes
        unsent (0: no byte limit). None when this server gives no way to tell: every write then
        goes through the guard's slow path (rockstar_ws.limits.guard)."""
        return None

    def pause_reading(self) -> None:
        """Stop reading the client's socket (servers that read without being asked: daphne)."""

    def resume_reading(self) -> None:
        """Undo :meth:`pause_reading`."""

    def abort(self) -> bool:
        """Drop the TCP connection at once; False when the server gives no way to."""
        return False

    def refuse(self, status: int, reason: str) -> bool:
        """Refuse the handshake with a real HTTP status if the server allows it; False if not."""
        return False

    def accepted(self) -> bool:
        """After the ``websocket.accept`` was sent: False when the server dropped it because it
        had ended the handshake itself meanwhile (True when the server does not tell)."""
        return True

    def denial_sent(self) -> None:
        """Called once a ``websocket.http.response`` denial is fully sent."""
