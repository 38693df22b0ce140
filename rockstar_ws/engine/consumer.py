"""The per-connection consumer: handshake checks, middleware, the handler, and the hot path.

A connection's life, in order:

1. ``websocket.connect`` arrives. The cheap checks come first, before any lookup
   (precheck.py): the ``Host`` header against ``ALLOWED_HOSTS`` (400), the client IP's
   handshake rate (429, unknown paths included), the subprotocol header (400). Then the host
   resolves to a tenant (if tenancy is configured) and the route is looked up (host routes
   first, then tenant routes, then global ones; 404).
2. Handshake checks, none of which run user code: the upgrader (origin, 403), authentication
   (401/403) on authenticated routes, and connection limits (429). A refusal is sent as
   refusals.py describes; its log line escapes every client-controlled value (logsafe.py).
3. Middleware runs, outermost first, around the rest; it may refuse by raising ``Deny``.
4. The innermost step accepts the handshake, registers the connection, starts the handler as
   a task and pumps client messages into the connection's inbox (the hot path: one
   ``receive()``, one deque append, one future wake-up per message). On daphne and uvicorn the
   pump parks while the handler waits for messages, and the handler receives for itself (one
   task wake-up per message; ``_pump``).
5. When either side ends, the other is wound down: a client that left gets its handler a
   grace period (``HANDLER_CLOSE_TIMEOUT``) before it is cancelled; a handler that returned
   closes with 1000, one that raised with 1011.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from channels.consumer import AsyncConsumer
from channels.exceptions import ChannelFull

from ..auth.manager import REFRESH_PREFIX
from ..conf import ws_settings
from ..core.backoff import Backoff
from ..core.connection import Message, SyncConnection, WebSocketConnection
from ..core.context import Context, Request
from ..core.errors import ConnectionClosed, Deny, ImproperlyConfigured, NoRoute
from ..core.logsafe import escape
from ..core.messages import BinaryMessage, CloseCode, TextMessage
from ..core.outage import outage
from ..core.routing import describe, normalize_host
from ..handshake.precheck import check_selected_subprotocol, raw_subprotocols
from ..limits.guard import new_guard
from ..limits.upgrader import effective_upgrader
from ..servers.bridges import bridge_for
from ..servers.refusals import refuse
from ..servers.shutdown import watch_daphne_shutdown
from .compose import AsgiSide, relative_path, rockstar_scope
from .heartbeat import PING_PREFIX, answer_ping
from .membership import Membership

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["RockstarConsumer"]

logger = logging.getLogger("rockstar_ws")
#: Seconds a parked pump's watchdog waits between looks: a handler busy elsewhere (not reading) for
#: one to two periods gets the pump back, so its client's close and the limits are seen.
PARK_CHECK = 0.05
refusal_logger = logging.getLogger("rockstar_ws.refusals")


def _host_of(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers") or ():
        if name == b"host":
            return normalize_host(value.decode("latin-1"))
    server = scope.get("server")
    return normalize_host(server[0]) if server else ""


def _replay(first: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]]
            ) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``receive`` with ``first`` (the ``websocket.connect`` read already) given again first."""
    pending = [first]

    async def replayed() -> dict[str, Any]:
        if pending:
            return pending.pop()
        return await receive()
    return replayed


class RockstarConsumer(AsyncConsumer):
    """A Channels consumer that runs one rockstar_ws handler for one connection.

    It is a real Channels consumer (``channel_layer``, ``channel_name``, ``as_asgi()``) but it
    replaces Channels' per-message dispatch with a direct pump, so the hot path stays short.
    Messages sent to ``channel_name`` through the channel layer with type ``rockstar.send``
    (``message_type``, ``data``) or ``rockstar.close`` (``code``, ``reason``) reach the client.
    """

    #: Set per instance (WebSocketServer.__call__ passes itself), or on a subclass.
    server: WebSocketServer

    def __init__(self, server: WebSocketServer | None = None, *, path: str | None = None, **kwargs: Any) -> None:
        if server is not None:
            self.server = server
        #: The path to route on (a ``server.urlpatterns`` entry knows it); None: the scope's,
        #: without its ``root_path``.
        self.path = path
        self.channel_layer = None
        self.channel_name: str | None = None
        self.conn: WebSocketConnection | None = None
        self.ctx: Context | None = None
        self.accepted = False
        #: Called by the pump with refresh messages (set per connection; None: not watched).
        self.control: Callable[[str], Awaitable[None]] | None = None
        # The pump's state (see _pump): the client has gone; the waiting pump's wake-up; the
        # watchdog's timer; readers inside a direct receive (and whether the pump waits for them to
        # leave it); direct reads so far and at the watchdog's last look.
        self._disconnected = False
        self._wake: asyncio.Future[None] | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._in_direct = 0
        self._waits_direct = False
        self._direct_reads = 0
        self._seen = 0
        self._max_size = 0
        self._limiter: Any = None
        self._plain = False

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope.get("type") != "websocket":
            raise ValueError(f"rockstar_ws serves websocket scopes only, got {scope.get('type')!r}")
        self.scope = scope
        self.base_send = send
        self.bridge = bridge_for(send)
        self._receive = receive
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left before the handshake reached us
        server = getattr(self, "server", None)
        if server is None:
            raise ImproperlyConfigured("RockstarConsumer needs a server: use a WebSocketServer as the ASGI app")
        request = Request.from_scope(scope, _host_of(scope))
        if self.path is not None:
            request.path = self.path
        elif scope.get("root_path"):
            request.path = relative_path(scope)
        ctx = self.ctx = Context(request, scope, server)
        release: Callable[[], Any] | None = None
        serving = False  # False: the handshake stages; True: middleware and the connection's life
        fallback = None
        try:
            release = await server.pipeline.run(ctx)
            serving = True
            await server.middleware_chain(ctx.route, self._serve_asgi if ctx.route.asgi else self._serve)(ctx)
            if not self.accepted:
                raise Deny(403, "refused by middleware", log_detail="middleware returned without calling next")
        except NoRoute as deny:
            fallback = server.fallback
            if fallback is None or serving:
                await self._end(deny, request)
        except Deny as deny:
            await self._end(deny, request)
        except ConnectionClosed:
            pass
        except Exception:
            if not serving:
                logger.exception("handshake of %s failed", escape(request.path))
            elif ctx.route.middleware or server._global_middleware():
                logger.exception("middleware of %s raised", ctx.route.label)
            else:
                # Without middleware the chain is the server's own set-up of the connection: saying
                # "middleware" there sends a reader looking for code that does not exist.
                logger.exception("serving %s failed (handler %s)", ctx.route.label, describe(ctx.route.handler))
            await self._end(None, request)
        finally:
            if self.conn is not None:
                self.conn.mark_closed(CloseCode.ABNORMAL)
            ctx.done.set()
            if release is not None:
                await release()
        if fallback is not None:  # no route here: the project's own application answers (docs/channels.md)
            await fallback(scope, _replay(message, receive), send)

    async def _end(self, deny: Deny | None, request: Request) -> None:
        """The one place a handshake or a connection ends on an error: before the accept, the
        refusal the client sees (``None``: 500); after it, a close (``None``: 1011)."""
        if not self.accepted:
            await self._refuse(deny or Deny(500, "internal error"), request)
        elif self.conn is not None:
            if deny is None:
                await self.conn.close(CloseCode.INTERNAL_ERROR, "internal error")
            else:
                await self.conn.close(deny.close_code, deny.reason)

    async def _refuse(self, deny: Deny, request: Request) -> None:
        refusal_logger.info(
            "refused %s%s from %s: %s %s%s", escape(request.host), escape(request.path),
            escape(request.remote_addr), deny.status, escape(deny.reason),
            f" ({escape(deny.log_detail, 500)})" if deny.log_detail else "",
        )
        self.server.stats.refused(deny)
        mode = ws_settings.REFUSAL_MODE
        route = getattr(self.ctx, "route", None)
        if route is not None:  # a route may ask for close codes where its clients are browsers
            mode = route.options.get("refusal_mode") or mode
        # Close mode accepts before closing: only with a name the client sent verbatim, or the
        # server could not complete even that handshake.
        subprotocol = self.ctx.subprotocol if self.ctx is not None else None
        if subprotocol is not None and subprotocol not in raw_subprotocols(self.scope):
            subprotocol = None
        try:
            await refuse(self.scope, self.base_send, deny, mode, self.bridge, subprotocol)
        except Exception:  # the client is gone already; nothing left to tell it
            pass

    # -- the connection, once middleware let it through -----------------------------------
    def _new_connection(self, ctx: Context) -> tuple[WebSocketConnection, Any]:
        """The connection (still CONNECTING) and its guard (None: no limit watched)."""
        conn = WebSocketConnection(ctx, self.base_send, inbox_size=ws_settings.INBOX_SIZE,
                                   inbox_max_bytes=ws_settings.INBOX_MAX_BYTES, bridge=self.bridge,
                                   membership=functools.partial(Membership, self.server))
        ctx.connection = conn
        self.conn = conn
        guard = new_guard(conn, ctx.upgrader or effective_upgrader(ctx.route, self.server.upgrader), self.bridge)
        conn.set_guard(guard)
        return conn, guard

    def _accepted(self, conn: WebSocketConnection, guard: Any, subprotocol: str | None) -> bool:
        """The accept went out: the connection is open and counted. False (nothing counted, no
        handler to run) when the server had ended the handshake itself meanwhile (daphne's
        connect timeout): the client has its refusal and the accept was dropped."""
        if not self.bridge.accepted():
            logger.info("handshake of %s ended by the server before the accept (its handshake timeout)",
                        conn.ctx.route.label)
            return False
        self.accepted = True
        conn.opened(subprotocol)
        self.server._opened(conn)
        if guard is not None:
            guard.start()
        if self.bridge.name == "daphne":
            watch_daphne_shutdown(self.server)
        return True

    async def _serve(self, ctx: Context) -> None:
        # Middleware may have chosen the subprotocol: a name the client did not send verbatim
        # would leave the handshake hanging with the connection already counted.
        check_selected_subprotocol(self.scope, ctx.subprotocol)
        conn, guard = self._new_connection(ctx)
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if ctx.subprotocol:
            accept["subprotocol"] = ctx.subprotocol
        await self.base_send(accept)
        if not self._accepted(conn, guard, ctx.subprotocol):
            raise ConnectionClosed(CloseCode.ABNORMAL, "handshake ended by the server")
        await self._run(ctx, conn, None)

    async def _serve_asgi(self, ctx: Context) -> None:
        """Serve the connection with the route's ASGI application (a Channels consumer): it gets
        the ``websocket.connect`` now that every stage and middleware passed, and accepts or
        refuses for itself; once it accepted, the pump feeds it as it feeds a handler."""
        conn, guard = self._new_connection(ctx)
        side = AsgiSide(ctx, conn, self.base_send, lambda subprotocol: self._accepted(conn, guard, subprotocol))
        application: Any = ctx.route.handler  # an ASGI application (Route.asgi)
        app = asyncio.ensure_future(application(rockstar_scope(ctx), side.receive, side.send))
        decided = asyncio.ensure_future(side.decided.wait())
        try:
            await asyncio.wait({app, decided}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            app.cancel()
            raise
        finally:
            decided.cancel()
        if side.accepted:
            await self._run(ctx, conn, app)
            return
        # Refused by the application (a close or a denial response before the accept), or it
        # ended without accepting: it never counted; let it wind down, then refuse.
        side.abandon()
        conn.mark_closed(CloseCode.ABNORMAL)
        try:
            async with asyncio.timeout(ws_settings.HANDLER_CLOSE_TIMEOUT):
                await asyncio.shield(app)
        except TimeoutError:
            app.cancel()
        except BaseException:
            pass
        if side.ended_by_server:
            raise ConnectionClosed(CloseCode.ABNORMAL, "handshake ended by the server")
        if side.refusal is not None:
            raise side.refusal
        exc = app.exception() if app.done() and not app.cancelled() else None
        if isinstance(exc, Deny):
            raise exc
        if exc is not None:
            logger.error("application of %s raised before accepting (%s)", ctx.route.label,
                         describe(ctx.route.handler), exc_info=exc)
            raise Deny(500, "internal error")
        raise Deny(403, "refused by the application", log_detail="the ASGI application ended without accepting")

    async def _run(self, ctx: Context, conn: WebSocketConnection, app: asyncio.Future[Any] | None) -> None:
        """The accepted connection's life: its channel, the handler (started here; ``app``: the
        ASGI application's task, running since the connect) and the pump."""
        server = self.server
        route = ctx.route
        listener = None
        attached: _Attached | None = None
        layer = server.channel_layer
        if layer is not None and server.per_connection_channel:
            self.channel_layer = layer
            self.channel_name = conn.channel_name = await layer.new_channel()
            attach = getattr(layer, "attach", None)
            if attach is not None:  # rockstar_ws.layers.InMemoryChannelLayer: no task while idle
                attached = _Attached(self, conn, layer.get_capacity(self.channel_name))
                attached.detach = attach(self.channel_name, attached)
            else:
                listener = asyncio.ensure_future(self._listen(layer, self.channel_name, conn))
        if app is not None:
            handler = app
        elif route.is_async:
            handler = asyncio.ensure_future(route.handler(ctx, conn))
        else:
            handler = asyncio.ensure_future(server.run_sync_handler(route.handler, ctx, SyncConnection(conn)))
        self.control = server.control_hook(ctx, conn)
        # The pump runs in this task (one task less per connection than a pump task of its own).
        # A handler that ends first interrupts it with a cancellation of this task, told apart
        # from a real one (the server shutting down) by ``handler_first``.
        me = asyncio.current_task()
        pumping = True
        handler_first = False

        def handler_done(_task: asyncio.Future[Any]) -> None:
            nonlocal handler_first
            if pumping and me is not None:
                handler_first = True
                me.cancel()

        handler.add_done_callback(handler_done)
        try:
            try:
                await self._pump(conn)
            except asyncio.CancelledError:
                if not handler_first or me is None or me.cancelling() > 1:
                    raise
                me.uncancel()
            finally:
                pumping = False
                conn.reading_by(None)
            if handler_first:
                # This task pumps again right after: a lingering close must not wait for it.
                conn.reading_by(me)
                await self._handler_finished(handler, conn)
                try:  # wait for the client's side of the close
                    async with asyncio.timeout(ws_settings.CLOSE_TIMEOUT):
                        await self._pump(conn)
                except TimeoutError:
                    pass
            else:
                ctx.done.set()
                try:
                    async with asyncio.timeout(ws_settings.HANDLER_CLOSE_TIMEOUT):
                        await asyncio.shield(handler)
                except TimeoutError:
                    logger.warning("handler of %s still running %.1fs after its client left; cancelled",
                                   route.label, ws_settings.HANDLER_CLOSE_TIMEOUT)
                except BaseException:
                    pass
                if handler.done():
                    await self._handler_finished(handler, conn)
        except asyncio.CancelledError:
            # The server is shutting down (daphne cancels every application on SIGTERM): tell
            # the client with 1001 rather than letting the process drop the TCP connection.
            await conn.close(CloseCode.GOING_AWAY, "server shutting down")
            raise
        finally:
            pumping = False
            conn.reading_by(None)
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            for task in (handler, listener, conn.closing):
                if task is not None and not task.done():
                    task.cancel()
            if attached is not None:
                attached.stop()
            conn.mark_closed(CloseCode.ABNORMAL)
            ctx.done.set()
            server._closed(conn)

    async def _handler_finished(self, handler: asyncio.Future[Any], conn: WebSocketConnection) -> None:
        if handler.cancelled():
            await conn.close(CloseCode.GOING_AWAY)
            return
        exc = handler.exception()
        if exc is None or isinstance(exc, ConnectionClosed):
            await conn.close(CloseCode.NORMAL)
        elif isinstance(exc, Deny):
            await conn.close(exc.close_code, exc.reason)
        else:
            logger.error("handler of %s raised (%s)", conn.ctx.route.label, describe(conn.ctx.route.handler),
                         exc_info=exc)
            await conn.close(CloseCode.INTERNAL_ERROR, "internal error")

    async def _pump(self, conn: WebSocketConnection) -> None:
        """The hot path: client messages into the connection's inbox until the client goes.

        When the pump has just handed a message to a handler waiting in ``read_message`` it parks
        (where the server's ``receive`` may be cancelled, ``bridge.direct_receive``): the handler
        then receives for itself, one task wake-up per message as in a bare ASGI app. A watchdog
        (one timer per connection, re-armed at most every ``PARK_CHECK`` seconds, never per
        message) wakes the pump when the handler has been busy elsewhere for a whole period, so a
        client's close, the inbox bounds and the limits still apply while the handler does not read.
        """
        self._setup_take(conn)
        take = self._take
        receive = self._receive
        can_park = self.bridge.direct_receive
        conn.reading_by(asyncio.current_task())  # cleared by _serve once the pump has stopped
        while not self._disconnected:
            if can_park:
                if self._in_direct:
                    # A reader is inside its own receive (the pump was woken by a close or a timed
                    # read): two receivers must not race for the client's next message.
                    self._waits_direct = True
                    try:
                        await self._wait_wake()
                    finally:
                        self._waits_direct = False
                    continue
                if conn.handed_off and not conn.closed:
                    await self._park(conn)  # a reader was just handed a message: let it read itself
                    continue
            if not await take(conn, await receive()):
                return

    async def _park(self, conn: WebSocketConnection) -> None:
        """Wait (not reading) until the watchdog, a timed read or the close wakes the pump."""
        self._seen = self._direct_reads
        conn.park(self._read_direct, self._unpark)
        self._arm_watch()
        try:
            await self._wait_wake()
        finally:
            conn.unparked()

    async def _wait_wake(self) -> None:
        wake = self._wake = asyncio.get_running_loop().create_future()
        try:
            await wake
        finally:
            self._wake = None

    def _unpark(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _arm_watch(self) -> None:
        if self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(PARK_CHECK, self._check_parked)

    def _check_parked(self) -> None:
        """The watchdog: while a reader waits on the client there is nothing to watch (its read
        re-arms the watchdog when it returns); a reader that read since the last look is making
        progress; otherwise the handler has been busy elsewhere for a whole period: unpark."""
        self._watch = None
        conn = self.conn
        if conn is None or not conn.parked:
            return
        if self._in_direct:
            return
        if self._direct_reads != self._seen:
            self._seen = self._direct_reads
            self._arm_watch()
            return
        conn.wake_parked_pump()

    async def _read_direct(self) -> Message | None:
        """One client message received in the reader's own task while the pump is parked: the
        message itself when it is one for the handler and needs nothing else (the common case:
        it never goes through the inbox), otherwise None once the pump's checks have handled it
        (a close, a ping, a refresh, a message too big or over the rate, or one queued)."""
        self._in_direct += 1
        try:
            message = await self._receive()
        finally:
            self._in_direct -= 1
            if self._waits_direct and not self._in_direct:
                self._unpark()
        self._direct_reads += 1
        if self._watch is None:
            self._arm_watch()
        conn = self.conn
        assert conn is not None
        if self._plain and message["type"] == "websocket.receive" and conn.is_open:
            # The checks of _take that can pass without anything to do, in the same order.
            text = message.get("text")
            max_size = self._max_size
            if text is not None:
                if (not max_size or len(text) * 4 <= max_size) and not text.startswith(PING_PREFIX):
                    return (TextMessage, text)
            else:
                data = message.get("bytes") or b""
                if not max_size or len(data) <= max_size:
                    return (BinaryMessage, data)
        await self._take(conn, message, direct=True)
        return None

    def _setup_take(self, conn: WebSocketConnection) -> None:
        self._max_size = conn.ctx.upgrader.max_message_size if conn.ctx.upgrader else self.server.max_message_size
        self._limiter = self.server.new_rate_limiter(conn)
        # No rate limit and no refresh control: a direct read may hand most messages over as they
        # come (_read_direct); otherwise every message goes through _take.
        self._plain = self._limiter is None and self.control is None

    async def _take(self, conn: WebSocketConnection, message: dict[str, Any], direct: bool = False) -> bool:
        """Process one message of the server's ``receive``, in the pump or in a parked pump's
        reader; False once the client has gone (``websocket.disconnect``)."""
        mtype = message["type"]
        if mtype == "websocket.receive":
            if conn.closed:
                conn.discard()
                return True
            text = message.get("text")
            max_size = self._max_size
            if text is not None:
                item = (TextMessage, text)
                size = len(text)
                if max_size and size * 4 > max_size:
                    size = len(text.encode("utf-8"))
            else:
                data = message.get("bytes") or b""
                item = (BinaryMessage, data)
                size = len(data)
            if max_size and size > max_size:
                await conn.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                self.server.stats.message_too_big()
                return True
            if text is not None:
                control = self.control  # token refresh (auth.TokenGuard); None on most connections
                if control is not None and text.startswith(REFRESH_PREFIX):
                    await control(text)
                    return True
            limiter = self._limiter
            if limiter is not None and not limiter.allow():
                if await self.server.on_rate_limited(conn):
                    return True
            # After the limiter: a heartbeat counts as client activity and a ping flood is a flood.
            if text is not None and text.startswith(PING_PREFIX):
                await answer_ping(conn, text)
                return True
            if not conn.feed(item):
                await conn.close(CloseCode.POLICY_VIOLATION, "inbox overflow")
            elif not direct and conn.inbox_full:  # a direct reader reads the inbox right away
                await self._hold(conn)
            return True
        if mtype == "websocket.disconnect":
            self._disconnected = True
            conn.mark_closed(message.get("code", CloseCode.ABNORMAL), message.get("reason") or "")
            return False
        return True

    async def _hold(self, conn: WebSocketConnection) -> None:
        """Stop reading until the handler has read the inbox below ``INBOX_MAX_BYTES``.

        Not a close: a slow handler keeps its client, which is slowed by TCP instead (uvicorn and
        granian stop reading a socket whose messages the application does not take; daphne is
        paused through its transport). See docs/protection.md.
        """
        bridge = self.bridge
        bridge.pause_reading()
        try:
            await conn.wait_for_room()
        finally:
            bridge.resume_reading()

    async def _listen(self, layer: Any, channel: str, conn: WebSocketConnection) -> None:
        """Messages for this connection arriving through the channel layer."""
        backoff = Backoff()
        while not conn.closed:
            try:
                message = await layer.receive(channel)
                backoff.reset()
            except Exception as exc:  # e.g. Redis went away: keep the connection, retry with backoff
                # One report per outage for the process, not a line per connection and retry.
                outage.failed("channel layer", "receiving a connection's channel messages", exc, holds=False,
                              log=logger)
                await backoff.sleep()
                continue
            if not await self._channel_message(conn, message):
                return

    async def _channel_message(self, conn: WebSocketConnection, message: dict[str, Any]) -> bool:
        """One message from the connection's channel; False once the connection has closed."""
        try:
            kind = message.get("type")
            if kind == "rockstar.send":
                await conn.write_message(message["message_type"], message["data"])
            elif kind == "rockstar.close":
                await conn.close(message.get("code", CloseCode.NORMAL), message.get("reason", ""))
            else:
                await self.server.on_channel_message(conn, message)
        except ConnectionClosed:
            return False
        except Exception:
            logger.exception("channel-layer message for %s failed", conn.ctx.route.label)
        return True


class _Attached:
    """A connection's channel on a layer that calls back (``layer.attach``, as
    rockstar_ws.layers.InMemoryChannelLayer has): messages wait in a deque made by the first one,
    and a task delivers them, in order, only while some wait. An idle connection holds neither."""

    __slots__ = ("consumer", "conn", "capacity", "pending", "worker", "detach")

    def __init__(self, consumer: RockstarConsumer, conn: WebSocketConnection, capacity: int) -> None:
        self.consumer = consumer
        self.conn = conn
        self.capacity = capacity
        self.pending: deque[dict[str, Any]] | None = None
        self.worker: asyncio.Future[None] | None = None
        self.detach: Callable[[], None] = _nothing

    def __call__(self, message: dict[str, Any]) -> None:
        if self.conn.closed:
            return  # as a queue nobody reads any more: the message is dropped
        pending = self.pending
        if pending is None:
            pending = self.pending = deque()
        elif len(pending) >= self.capacity:
            raise ChannelFull(self.conn.channel_name)
        pending.append(message)
        if self.worker is None:
            self.worker = asyncio.ensure_future(self._drain(pending))

    async def _drain(self, pending: deque[dict[str, Any]]) -> None:
        try:
            while pending:
                if not await self.consumer._channel_message(self.conn, pending.popleft()):
                    pending.clear()
        finally:
            self.worker = None

    def stop(self) -> None:
        """The connection ended: no more deliveries."""
        self.detach()
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()


def _nothing() -> None:
    pass
