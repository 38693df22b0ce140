"""What rockstar_ws does beyond plain ASGI on the servers it knows.

ASGI gives an application no close reason on daphne (daphne#374), only close codes 1000 and
3000-4999 (autobahn refuses 1008, 1009, 1011, 1013 from ``serverClose``), and a bare 403 for
every refused handshake (no ``websocket.http.response``, daphne#486). When rockstar_ws runs under
daphne it talks to daphne's protocol object for those three things, exactly as daphne itself does
for an application crash (``sendCloseFrame``) and a rejection (``ConnectionDeny``). Anything it
does not recognise falls back to plain ASGI messages.

Under uvicorn it reads the protocol's transport for two things plain ASGI lacks: how many bytes
are written but unsent (so ``WRITE_BUFFER_LIMIT`` and ``GROUP_MAX_BUFFERED_BYTES`` hold there
too), and a way to drop a client that does not read, whose close frame would otherwise wait
behind the data it never takes.

Under granian it lingers before a close: granian ends the TCP connection as soon as the close
frame is written, without waiting for the client's close, so client frames still unread at that
moment turn its FIN into a reset, and a client still sending loses the close frame (it sees 1006).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ServerBridge", "bridge_for"]

Send = Callable[[dict[str, Any]], Awaitable[None]]


class ServerBridge:
    """Plain ASGI: close with a message, no buffer insight, refusals as refusals.py sends them."""

    name = "asgi"
    real_refusal_status = False
    #: True when a close must wait for the client to stop sending (see :meth:`linger`).
    lingers = False

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

    def denial_sent(self) -> None:
        """Called once a ``websocket.http.response`` denial is fully sent."""


class DaphneBridge(ServerBridge):
    """daphne: close frames with any code and a reason, real refusal statuses, buffer sizes."""

    name = "daphne"
    real_refusal_status = True

    def __init__(self, send: Send, protocol: Any) -> None:
        super().__init__(send)
        self.protocol = protocol

    async def close(self, code: int, reason: str = "") -> None:
        p = self.protocol
        if getattr(p, "state", None) != p.STATE_OPEN:
            return
        p.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123] or None, isReply=False)

    def buffered_bytes(self) -> int:
        transport = getattr(self.protocol, "transport", None)
        if transport is None:
            return 0
        return len(getattr(transport, "dataBuffer", b"")) + int(getattr(transport, "_tempDataLen", 0))

    def pause_reading(self) -> None:
        # daphne queues every message it reads for the application without bound: only
        # Twisted's producer pause makes the pump's wait reach the client as TCP back-pressure.
        transport = getattr(self.protocol, "transport", None)
        if transport is not None and getattr(self.protocol, "state", None) == self.protocol.STATE_OPEN:
            transport.pauseProducing()

    def resume_reading(self) -> None:
        transport = getattr(self.protocol, "transport", None)
        if transport is not None and getattr(transport, "connected", False):
            transport.resumeProducing()

    def abort(self) -> bool:
        transport = getattr(self.protocol, "transport", None)
        if transport is None:
            return False
        transport.abortConnection()
        return True

    def refuse(self, status: int, reason: str) -> bool:
        p = self.protocol
        deferred = getattr(p, "handshake_deferred", None)
        if deferred is None or deferred.called:
            return False
        from autobahn.websocket.types import ConnectionDeny

        deferred.errback(ConnectionDeny(code=status, reason=reason))
        del p.handshake_deferred
        p.server.protocol_disconnected(p)
        # The same details daphne's own serverReject() passes: its access log and runserver's
        # logger format them with "%(client)s" (a missing key prints a "Logging error" traceback).
        client = "{}:{}".format(*p.client_addr) if p.client_addr else None
        p.server.log_action("websocket", "rejected", {"path": p.request.path, "client": client})
        return True


class UvicornBridge(ServerBridge):
    """uvicorn: plain ASGI messages, plus its transport's write buffer and abort.

    Its default ``websockets-sansio`` protocol never marks the handshake complete after a
    ``websocket.http.response`` denial, so every refusal ends with ``ERROR ASGI callable returned
    without completing handshake`` (its wsproto protocol does mark it; upstream fix proposed in
    Kludex/uvicorn#3138). Marking it here, once the body is on the wire, is what that fix does.
    """

    name = "uvicorn"

    def __init__(self, send: Send, protocol: Any) -> None:
        super().__init__(send)
        self.protocol = protocol

    def denial_sent(self) -> None:
        p = self.protocol
        if getattr(p, "initial_response", None) is not None and getattr(p, "handshake_complete", True) is False:
            p.handshake_complete = True

    def buffered_bytes(self) -> int:
        transport = getattr(self.protocol, "transport", None)
        return transport.get_write_buffer_size() if transport is not None else 0

    def abort(self) -> bool:
        transport = getattr(self.protocol, "transport", None)
        if transport is None:
            return False
        transport.abort()
        return True


#: Quiet time that ends a linger: far above the gaps inside a burst a client writes at once, short
#: enough not to matter to a connection being closed.
LINGER_QUIET = 0.2
#: Longest linger: a client that never stops sending (a flood) is read for this long, then closed
#: anyway (it may see 1006).
LINGER_MAX = 1.0


class GranianBridge(ServerBridge):
    """granian: plain ASGI messages; its close ends the TCP connection at once, so closes linger.

    granian (2.8) drops both halves of the WebSocket stream right after writing the close frame:
    it reads nothing more from the client and never waits for the client's close. Whatever the
    client sent that is still unread in the kernel then makes Linux answer with a reset instead
    of a FIN, and a client still writing gets ``EPIPE`` before it has read the close frame
    (``websockets`` reports 1006). Reading until the client pauses, then closing, empties that
    buffer: a client that sent a burst and then listens gets its close code.
    """

    name = "granian"
    lingers = True

    async def linger(self, conn: Any, limit: float) -> None:
        """Wait until the pump (still reading, discarding) has read nothing for ``LINGER_QUIET``
        seconds, at most ``limit`` seconds (``LINGER_MAX`` at most)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(limit, LINGER_MAX)
        while conn._reader is not None:
            seen = conn._discarded
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(LINGER_QUIET, remaining))
            if conn._discarded == seen:
                return


def bridge_for(send: Send) -> ServerBridge:
    """The bridge for the server that handed us ``send`` (through Channels' session wrapper too)."""
    inner: Any = send
    for _ in range(8):
        if isinstance(inner, functools.partial) and inner.args:
            protocol = inner.args[0]
            if type(protocol).__module__ == "daphne.ws_protocol" and hasattr(protocol, "sendCloseFrame"):
                return DaphneBridge(send, protocol)
            break
        # Channels' InstanceSessionWrapper.send passes messages on to ``real_send``.
        owner = getattr(inner, "__self__", None)
        if type(owner).__module__.startswith("uvicorn.protocols.websockets") and hasattr(owner, "transport"):
            return UvicornBridge(send, owner)
        if type(owner).__module__ == "granian._granian" and type(owner).__name__ == "ASGIWebsocketProtocol":
            return GranianBridge(send)
        nxt = getattr(owner, "real_send", None)
        if nxt is None:
            break
        inner = nxt
    return ServerBridge(send)
