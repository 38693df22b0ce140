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
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.transport import Send, ServerBridge

if TYPE_CHECKING:
    from ..core.connection import WebSocketConnection

__all__ = ["DaphneBridge", "GranianBridge", "ServerBridge", "UvicornBridge", "bridge_for"]

#: Headers of unmasked server frames with a 16-bit and a 64-bit payload length (RFC 6455, 5.2).
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


class _ProtocolBridge(ServerBridge):
    """A bridge holding the server's protocol object for one connection."""

    #: The transport's method that drops the TCP connection at once.
    abort_method = "abort"

    def __init__(self, send: Send, protocol: Any) -> None:
        super().__init__(send)
        self.protocol = protocol

    def abort(self) -> bool:
        transport = getattr(self.protocol, "transport", None)
        if transport is None:
            return False
        getattr(transport, self.abort_method)()
        return True


class DaphneBridge(_ProtocolBridge):
    """daphne: close frames with any code and a reason, real refusal statuses, buffer sizes."""

    name = "daphne"
    abort_method = "abortConnection"
    direct_receive = True  # receive is the application queue's get

    def __init__(self, send: Send, protocol: Any) -> None:
        super().__init__(send, protocol)
        #: write_frame's (transport, socket send) on plain TCP, () elsewhere, None before its first write.
        self._plain: tuple[Any, ...] | None = None

    async def close(self, code: int, reason: str = "") -> None:
        p = self.protocol
        if getattr(p, "state", None) != p.STATE_OPEN:
            return
        p.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123] or None, isReply=False)

    def buffered_bytes(self) -> int:
        transport = getattr(self.protocol, "transport", None)
        if transport is None:
            return 0
        if not all(hasattr(transport, name) for name in ("dataBuffer", "offset", "_tempDataLen")):
            return 0
        return _unsent(transport)

    def write_ready(self, limit: int) -> Callable[[], bool] | None:
        # daphne's send never waits (Twisted buffers): only the byte limit can stop a write.
        if not limit:
            return _always
        t = getattr(self.protocol, "transport", None)
        if t is None or not all(hasattr(t, name) for name in ("dataBuffer", "offset", "_tempDataLen")):
            return None  # not Twisted's FileDescriptor (TLS wraps it): buffered_bytes() per write

        def ready() -> bool:
            return _unsent(t) <= limit
        return ready

    def _plain_transport(self) -> tuple[Any, ...]:
        """(transport, socket send) on plain TCP (or a Unix socket) through Twisted's
        FileDescriptor, else (); looked up on the first write and kept."""
        plain = self._plain
        if plain is None:
            t = self.protocol.transport
            ok = (getattr(t, "TLS", True) is False and hasattr(t, "socket") and hasattr(t, "_tempDataBuffer")
                  and hasattr(t, "offset"))
            plain = self._plain = (t, t.socket.send) if ok else ()
        return plain

    def direct_writer(self) -> Callable[[bool, str | bytes], bool] | None:
        return self.write_now

    def frame_writer(self) -> Callable[[Any, int], int] | None:
        return self.write_frame

    def write_now(self, binary: bool, data: str | bytes) -> bool:
        """Write one message straight to the client's socket when nothing else waits to be sent;
        False (nothing written) when the usual path must take it.

        The usual path is daphne's ``send`` -> ``handle_reply`` -> autobahn's ``sendMessage`` ->
        Twisted's ``write``, which only buffers and registers the socket with the event loop (two
        ``epoll_ctl`` calls and a loop pass per message, as ``write_frame`` describes). Here,
        when Twisted and autobahn hold nothing unsent for this plain-TCP client and no option
        changes the frame (per-message compression, automatic fragmentation, a payload limit it
        is over), the frame is built (FIN, opcode, length; server frames are not masked) and
        sent at once; what the kernel does not take goes to Twisted's ``write``. Anything else
        (a frame written while data waits, TLS, a closing connection) returns False, and the
        caller sends through daphne as before, behind what waits.
        """
        p = self.protocol
        if p.state != p.STATE_OPEN or p.send_queue or p._perMessageCompress is not None or p.autoFragmentSize:
            return False
        plain = self._plain if self._plain is not None else self._plain_transport()
        if not plain:
            return False
        t, send = plain
        if t._tempDataLen or t.dataBuffer or not t.connected or t.disconnecting:
            return False
        payload: bytes = data if isinstance(data, bytes) else data.encode("utf-8")
        n = len(payload)
        if 0 < p.maxMessagePayloadSize < n:
            return False  # autobahn refuses it with its own error
        head = 0x82 if binary else 0x81
        if n < 126:
            frame = bytes((head, n)) + payload
        elif n < 65536:
            frame = _HEAD16.pack(head, 126, n) + payload
        else:
            frame = _HEAD64.pack(head, 127, n) + payload
        _send_at_once(t, send, frame)
        return True

    def write_frame(self, prepared: Any, limit: int) -> int:
        """Write one broadcast frame prepared once for every member (autobahn's ``PreparedMessage``).

        Returns 0 when written, -1 when the WebSocket is not open (nothing written), or the bytes
        daphne holds unsent for this client when they exceed ``limit`` (nothing written; ``limit``
        0 means no limit).

        A broadcast writes the same frame to thousands of clients, and autobahn's
        ``sendPreparedMessage`` spent most of each write outside the socket: a debug log call
        whose arguments it formats before the level check, then Twisted's ``write``, which only
        buffers and registers the socket with the event loop (one ``epoll_ctl`` to add it, a
        loop pass, the ``send``, one ``epoll_ctl`` to remove it). When Twisted holds nothing
        unsent for this plain-TCP client, the frame goes to the socket at once instead (the
        ``send`` Twisted would make on the next pass, so the bytes on the wire and their order are
        the same); whatever the kernel does not take is handed to Twisted's ``write``, as is every
        frame while Twisted holds data for the client (it goes behind that data), or on a closing
        transport. TLS, per-message compression and autobahn's own send queue keep autobahn's path.
        Frames written here are not added to autobahn's ``trafficStats`` (daphne never reads them;
        one more object touched per member cost 5% of a fan-out).
        """
        p = self.protocol
        if p.state != p.STATE_OPEN:
            return -1
        if p._perMessageCompress is not None and not prepared.doNotCompress:
            held = self.buffered_bytes()
            if limit and held > limit:
                return held
            p.sendPreparedMessage(prepared)  # compressed per client: autobahn's own path
            return 0
        data: bytes = prepared.payloadHybi
        plain = self._plain if self._plain is not None else self._plain_transport()
        if plain:
            t, send = plain
            if not t._tempDataLen and not t.dataBuffer and not p.send_queue and t.connected \
                    and not t.disconnecting and not t.TLS:
                _send_at_once(t, send, data)
            else:
                held = _unsent(t)
                if limit and held > limit:
                    return held
                if p.send_queue or t.TLS:  # autobahn's own queue goes first; TLS encrypts
                    p.sendPreparedMessage(prepared)
                    return 0
                t.write(data)
        else:
            held = self.buffered_bytes()
            if limit and held > limit:
                return held
            p.sendPreparedMessage(prepared)
        return 0

    def accepted(self) -> bool:
        # daphne refuses a handshake that the application has not accepted within
        # --websocket_connect_timeout (5 s) itself and then ignores the accept: the protocol is
        # then not open (autobahn opens it synchronously inside the accept that got through).
        p = self.protocol
        open_state = getattr(p, "STATE_OPEN", None)
        return open_state is None or getattr(p, "state", open_state) == open_state

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


class UvicornBridge(_ProtocolBridge):
    """uvicorn: plain ASGI messages, plus its transport's write buffer and abort.

    Its default ``websockets-sansio`` protocol never marks the handshake complete after a
    ``websocket.http.response`` denial, so every refusal ends with ``ERROR ASGI callable returned
    without completing handshake`` (its wsproto protocol does mark it; upstream fix proposed in
    Kludex/uvicorn#3138). Marking it here, once the body is on the wire, is what that fix does.
    """

    name = "uvicorn"
    direct_receive = True  # receive awaits the protocol's asyncio.Queue

    def __init__(self, send: Send, protocol: Any) -> None:
        super().__init__(send, protocol)
        self._buffer_size: Any = None

    def denial_sent(self) -> None:
        p = self.protocol
        if getattr(p, "initial_response", None) is not None and getattr(p, "handshake_complete", True) is False:
            p.handshake_complete = True

    def buffered_bytes(self) -> int:
        # The protocol's transport is set before the application runs and never replaced.
        size = self._buffer_size
        if size is None:
            transport = getattr(self.protocol, "transport", None)
            if transport is None:
                return 0
            size = self._buffer_size = transport.get_write_buffer_size
        return size()

    def write_ready(self, limit: int) -> Callable[[], bool] | None:
        # uvicorn's websockets-sansio and wsproto protocols: send() waits only on ``writable``
        # (cleared while asyncio's transport is over its high-water mark), then writes at once.
        p = self.protocol
        writable = getattr(p, "writable", None)
        transport = getattr(p, "transport", None)
        if not isinstance(writable, asyncio.Event) or transport is None:
            return None  # the legacy websockets protocol awaits its own drain
        is_set = writable.is_set
        if not limit:
            return is_set
        try:
            _low, high = transport.get_write_buffer_limits()
        except (AttributeError, NotImplementedError, TypeError, ValueError):
            high = None
        if high is not None and high <= limit:
            # ``writable`` is cleared inside the write that takes the buffer past the high-water
            # mark (``pause_writing``), so while it is set the buffer holds at most ``high``.
            return is_set
        size = transport.get_write_buffer_size

        def ready() -> bool:
            return is_set() and size() <= limit
        return ready


def _unsent(t: Any) -> int:
    """Bytes Twisted's FileDescriptor ``t`` holds unsent: ``dataBuffer`` is sent up to
    ``offset``, ``_tempDataBuffer`` (``_tempDataLen`` bytes) waits to be joined to it."""
    return len(t.dataBuffer) - t.offset + t._tempDataLen


def _send_at_once(t: Any, send: Callable[[bytes], int], data: bytes) -> None:
    """Send ``data`` on the socket of ``t`` (Twisted holds nothing for it); what the kernel does
    not take goes to Twisted's ``write``, behind nothing."""
    try:
        sent = send(data)
    except OSError:  # full (BlockingIOError), reset or closed: Twisted's write takes it from here,
        sent = 0  # and finds a dead connection on its own and ends it
    if sent < len(data):
        t.write(data[sent:])


def _always() -> bool:
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

    async def linger(self, conn: WebSocketConnection, limit: float) -> None:
        """Wait until the pump (still reading, discarding) has read nothing for ``LINGER_QUIET``
        seconds, at most ``limit`` seconds (``LINGER_MAX`` at most)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(limit, LINGER_MAX)
        while conn.reading:
            seen = conn.discarded
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(LINGER_QUIET, remaining))
            if conn.discarded == seen:
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
