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
"""

from __future__ import annotations

import functools
from typing import Any

from ..core.transport import Send, ServerBridge

__all__ = ["DaphneBridge", "ServerBridge", "UvicornBridge", "bridge_for"]


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

    def denial_sent(self) -> None:
        p = self.protocol
        if getattr(p, "initial_response", None) is not None and getattr(p, "handshake_complete", True) is False:
            p.handshake_complete = True

    def buffered_bytes(self) -> int:
        transport = getattr(self.protocol, "transport", None)
        return transport.get_write_buffer_size() if transport is not None else 0


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
        nxt = getattr(owner, "real_send", None)
        if nxt is None:
            break
        inner = nxt
    return ServerBridge(send)
