"""Close open connections with 1001 ("going away") when daphne shuts down.

On SIGTERM daphne is meant to cancel every application (``kill_all_applications``), but in
daphne 4.2 that trigger raises ``KeyError: 'application_instance'`` as soon as one finished
application is still in its table, so nothing is cancelled and the process drops every TCP
connection: clients see 1006. rockstar_ws adds its own "before shutdown" trigger to daphne's
Twisted reactor: it sends every open connection a 1001 close frame, marks it closed (handlers
see ``ConnectionClosed(1001)``) and gives clients up to ``CLOSE_TIMEOUT`` seconds (at most
2 s) to answer before the reactor goes on shutting down. Then it runs the servers' shutdown
hooks (``WebSocketServer.on_shutdown``): the registry's takes the process out of Redis's
cluster-wide counts at once (docs/connections.md).

Under uvicorn a cancelled consumer closes with 1001 itself (consumer.py); uvicorn also closes
open connections on shutdown.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from ..core.messages import CloseCode

if TYPE_CHECKING:
    from ..engine.server import WebSocketServer

__all__ = ["watch_daphne_shutdown"]

logger = logging.getLogger("rockstar_ws")

_servers: weakref.WeakSet[WebSocketServer] = weakref.WeakSet()
_installed = False
REASON = "server shutting down"


def watch_daphne_shutdown(server: WebSocketServer) -> None:
    """Make sure ``server``'s connections get 1001 when the daphne process shuts down."""
    global _installed
    _servers.add(server)
    if _installed:
        return
    _installed = True
    from twisted.internet import reactor

    reactor.addSystemEventTrigger("before", "shutdown", _close_all)  # type: ignore[arg-type]  # twisted types the phase argument as a callable


def _close_all() -> Any:
    from twisted.internet import defer, reactor

    from ..conf import ws_settings

    protocols = []
    for server in list(_servers):
        for conn in server.connections:
            if conn.closed:
                continue
            protocol = getattr(conn.transport, "protocol", None)
            conn.mark_closed(CloseCode.GOING_AWAY, REASON)
            if protocol is None or getattr(protocol, "state", None) != protocol.STATE_OPEN:
                continue
            try:
                protocol.sendCloseFrame(code=CloseCode.GOING_AWAY, reasonUtf8=REASON.encode(), isReply=False)
                protocols.append(protocol)
            except Exception:  # a transport already gone: nothing to tell
                pass
    hooks: list[Any] = []
    for server in list(_servers):
        hooks += [h for h in getattr(server, "shutdown_hooks", ()) if h not in hooks]
    if not protocols:
        return _run_hooks(hooks)
    logger.info("server shutting down: sent 1001 to %d connection(s)", len(protocols))
    done: defer.Deferred[None] = defer.Deferred()
    clock: Any = reactor  # twisted types the global reactor as the IReactor* interfaces, not the object
    deadline = clock.seconds() + min(float(ws_settings.CLOSE_TIMEOUT), 2.0)

    def poll() -> None:
        if all(p.state == p.STATE_CLOSED for p in protocols) or clock.seconds() >= deadline:
            done.callback(None)
        else:
            clock.callLater(0.05, poll)

    poll()
    if hooks:
        done.addCallback(lambda _: _run_hooks(hooks))
    return done


#: Seconds each shutdown hook may take (the process is on its way out).
HOOK_TIMEOUT = 3.0


def _run_hooks(hooks: list[Any]) -> Any:
    """Run the servers' shutdown hooks (``WebSocketServer.on_shutdown``) on daphne's asyncio
    loop, one after the other; the reactor's shutdown waits for them (each at most
    ``HOOK_TIMEOUT`` seconds)."""
    if not hooks:
        return None
    import asyncio

    from twisted.internet import defer

    async def run() -> None:
        for hook in hooks:
            try:
                await asyncio.wait_for(hook(), HOOK_TIMEOUT)
            except Exception:
                logger.exception("shutdown hook %r failed", hook)

    return defer.Deferred.fromFuture(asyncio.ensure_future(run()))
