"""The pub/sub route: the handler speaking docs/protocol.md (``rockstar.pubsub.v1``).

``server.register_pubsub_route("/ws/live")`` registers a :class:`PubSubHandler`. The handler
reads commands in the connection's handler task and answers through the connection's
:class:`~rockstar_ws.pubsub.service.Session`, whose one writer task keeps every reply, catch-up
and live publication of the connection in order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from rockstar_ws.core.errors import ConnectionClosed, Deny
from rockstar_ws.core.logsafe import escape
from rockstar_ws.pubsub.history import Position
from rockstar_ws.pubsub.permissions import Action, Permissions, Principal, Refusal, Rule, validate_group
from rockstar_ws.pubsub.service import Delivered, Session, Subscription, pubsub_for

if TYPE_CHECKING:
    from rockstar_ws.core.connection import WebSocketConnection
    from rockstar_ws.core.context import Context
    from rockstar_ws.engine.server import WebSocketServer

__all__ = ["PUBSUB_PROTOCOL", "PubSubHandler", "SubscribeResult", "subscribe"]

logger = logging.getLogger("rockstar_ws.pubsub")

PUBSUB_PROTOCOL = "rockstar.pubsub.v1"
_VERSION_PREFIX = "rockstar.pubsub."
_MAX_ID = 2**53 - 1
DEFAULT_MAX_SUBSCRIPTIONS = 100


class _Error(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _permissions(value: Permissions | Sequence[Rule] | Sequence[dict[str, Any]] | None) -> Permissions:
    if isinstance(value, Permissions):
        return value
    if value is None:
        from rockstar_ws.conf import ws_settings

        return Permissions.from_settings(ws_settings.PUBSUB_PERMISSIONS)
    items = list(value)
    if all(isinstance(r, Rule) for r in items):
        return Permissions(cast("list[Rule]", items))
    return Permissions.from_settings(items, setting="permissions")


def select_subprotocol(ctx: Context) -> None:
    """Choose the protocol version of a pub/sub handshake (before authentication reads a token).

    ``rockstar.pubsub.v1`` offered: selected (the token marker next to it is only read). No
    ``rockstar.pubsub.*`` offered: v1 without a subprotocol, for plain clients. Only other
    versions offered: ``Deny(400)``, before any user code runs.
    """
    offered = ctx.request.subprotocols
    if PUBSUB_PROTOCOL in offered:
        ctx.subprotocol = PUBSUB_PROTOCOL
        return
    others = [p for p in offered if p.startswith(_VERSION_PREFIX)]
    if others:
        raise Deny(400, "unsupported pub/sub protocol version",
                   log_detail=f"offered {escape(', '.join(others), 200)}; this server speaks {PUBSUB_PROTOCOL}")


class PubSubHandler:
    """The handler of a pub/sub route (one per route): permissions and limits, then the protocol."""

    def __init__(self, server: WebSocketServer,
                 permissions: Permissions | Sequence[Rule] | Sequence[dict[str, Any]] | None = None, *,
                 max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS) -> None:
        if isinstance(max_subscriptions, bool) or not isinstance(max_subscriptions, int) or max_subscriptions < 1:
            raise ValueError(f"max_subscriptions must be a whole number >= 1, got {max_subscriptions!r}")
        self.server = server
        self._given = permissions
        self._permissions: Permissions | None = _permissions(permissions) if permissions is not None else None
        self.max_subscriptions = max_subscriptions

    @property
    def permissions(self) -> Permissions:
        """The route's rules (given to the route, else ``ROCKSTAR_WS["PUBSUB_PERMISSIONS"]``)."""
        if self._permissions is None:
            self._permissions = _permissions(None)
        return self._permissions

    async def before_accept(self, ctx: Context) -> None:
        """Handshake step (no user code): pick the protocol version; on a route that does not
        require a token, authenticate one that is sent anyway (an invalid one is refused with
        401), so one route serves readers without an account and users with one."""
        select_subprotocol(ctx)
        if ctx.route.authenticated:
            return
        manager = self.server.auth_manager
        raw, _source = manager.find_token(ctx)
        if raw is not None:
            from rockstar_ws import tenants

            await manager.authenticate(ctx)
            tenants.check_tenant_binding(ctx)

    async def __call__(self, ctx: Context, conn: WebSocketConnection) -> None:
        """Serve one connection: commands in, replies and pushes out, until the client leaves."""
        service = pubsub_for(self.server)
        session = service.session(conn)
        principal = Principal.from_request(ctx.request, getattr(ctx, "user", None))
        while True:
            try:
                _type, data = await conn.read_message()
            except ConnectionClosed:
                return
            cid: Any = None
            try:
                if not isinstance(data, str):
                    raise _Error("bad_request", "frames are JSON text")
                try:
                    cmd = json.loads(data)
                except (ValueError, RecursionError):
                    raise _Error("bad_request", "a frame must be one JSON object") from None
                if not isinstance(cmd, dict):
                    raise _Error("bad_request", "a frame must be one JSON object")
                cid = cmd.get("id")
                if isinstance(cid, bool) or not isinstance(cid, int) or not 1 <= cid <= _MAX_ID:
                    cid = None
                    raise _Error("bad_request", "id must be an integer from 1 to 2^53 - 1")
                result = await self._command(cmd, session, principal)
                if result is not None:
                    session.send(_reply(cid, result))
            except _Error as exc:
                session.send(_error(cid, exc.code, exc.message))
            except ConnectionClosed:
                return
            except Exception:
                logger.exception("pub/sub command on %s failed", ctx.route.label)
                session.send(_error(cid, "internal", "server error"))

    async def _authorize(self, principal: Principal, action: Action, group: Any) -> str:
        bad = validate_group(group)
        if bad is not None:
            raise _Error(str(bad.code), bad.message)
        refusal: Refusal | None = await self.permissions.authorize(principal, action, group)
        if refusal is not None:
            raise _Error(str(refusal.code), refusal.message)
        return str(group)

    async def _command(self, cmd: dict[str, Any], session: Session, principal: Principal) -> dict[str, Any] | None:
        kind = cmd.get("type")
        if kind == "subscribe":
            await self._subscribe(cmd, session, principal)
            return None
        if kind == "unsubscribe":
            group = cmd.get("group")
            sub = session.subs.get(group) if isinstance(group, str) else None
            if sub is None:
                raise _Error("not_subscribed", "this group is not subscribed")
            await session.remove(sub)
            return {}
        if kind == "publish":
            group = await self._authorize(principal, Action.PUBLISH, cmd.get("group"))
            if "data" not in cmd:
                raise _Error("bad_request", "publish needs data")
            try:
                result = await pubsub_for(self.server).publish(group, cmd["data"], tenant=principal.tenant_id)
            except ValueError:
                raise _Error("bad_request", "data must be a JSON value") from None
            except Exception as exc:
                logger.warning("publish failed, history unavailable: %r", exc)
                raise _Error("history_unavailable", "the history store did not answer; nothing was published") from None
            pos = result.position
            return {} if pos is None else {"epoch": pos.epoch, "offset": pos.offset}
        if kind == "presence":
            group = await self._authorize(principal, Action.PRESENCE, cmd.get("group"))
            if group not in session.subs:
                raise _Error("not_subscribed", "this group is not subscribed")
            from rockstar_ws.pubsub import presence

            return await presence.stats(self.server, session.subs[group])
        raise _Error("unsupported_type", "unknown command type")

    async def _subscribe(self, cmd: dict[str, Any], session: Session, principal: Principal) -> None:
        group = await self._authorize(principal, Action.SUBSCRIBE, cmd.get("group"))
        since = _since(cmd.get("since"))
        wants_presence = cmd.get("presence", False)
        if not isinstance(wants_presence, bool):
            raise _Error("bad_request", "presence must be true or false")
        if wants_presence:
            await self._authorize(principal, Action.PRESENCE, group)
        if group in session.subs:
            raise _Error("already_subscribed", "this group is subscribed already")
        if len(session.subs) >= self.max_subscriptions:
            raise _Error("too_many_subscriptions", "the connection's subscription limit is reached")
        try:
            sub = await session.add(group, principal.tenant_id)
        except Exception as exc:
            logger.warning("subscribing failed, channel layer unavailable: %r", exc)
            raise _Error("history_unavailable", "the server could not join the group") from None
        cid = cmd["id"]
        rule = self.permissions.rule_for(group)
        present = rule is not None and rule.check_for(Action.PRESENCE) is not None

        async def start() -> None:
            try:
                catch = await session.start(sub, since)
            except Exception as exc:
                logger.warning("reading the history failed: %r", exc)
                await session.remove(sub)
                await session.conn.send_text(
                    _error(cid, "history_unavailable", "the history store did not answer; not subscribed"))
                return
            if not sub.active:  # unsubscribed while the history was read
                return
            if catch is None:
                await session.conn.send_text(_reply(cid, {"catchup": 0}))
            else:
                result: dict[str, Any] = {"epoch": catch.position.epoch, "offset": catch.position.offset,
                                          "catchup": len(catch.publications)}
                if catch.recovered is not None:
                    result["recovered"] = catch.recovered
                await session.conn.send_text(_reply(cid, result))
                for p in catch.publications:
                    await session.conn.send_text(p.data if isinstance(p.data, str) else p.data.decode())

        if present:  # before the reply: a presence command right after subscribe counts this one
            from rockstar_ws.pubsub import presence

            try:
                await presence.watch(self.server, sub, principal, pushes=wants_presence)
            except Exception as exc:
                # The presence store's Redis is down (or failing over): the same retryable answer
                # as a history that does not answer, and no subscription left behind.
                logger.warning("subscribing failed, presence store unavailable: %r", exc)
                await session.remove(sub)
                raise _Error("history_unavailable", "the presence store did not answer; not subscribed") from None
        session.call(start)
        return None


def _since(value: Any) -> Position | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Error("bad_request", "since must be {\"epoch\": str, \"offset\": int}")
    epoch, offset = value.get("epoch"), value.get("offset")
    if not isinstance(epoch, str) or isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise _Error("bad_request", "since must be {\"epoch\": str, \"offset\": int >= 0}")
    return Position(offset, epoch)


def _reply(cid: int, result: dict[str, Any]) -> str:
    return json.dumps({"id": cid, "result": result}, separators=(",", ":"))


def _error(cid: int | None, code: str, message: str) -> str:
    return json.dumps({"id": cid, "error": {"code": code, "message": message}}, separators=(",", ":"))


# -- a handler's own subscriptions -------------------------------------------------------------
class SubscribeResult:
    """What ``await conn.subscribe(group, since=...)`` found: the catch-up it delivered and the
    position after it (``recovered``: None without ``since``; False: reload your state)."""

    __slots__ = ("group", "recovered", "position", "catchup")

    def __init__(self, group: str, recovered: bool | None, position: Position | None, catchup: int) -> None:
        self.group = group
        self.recovered = recovered
        self.position = position
        self.catchup = catchup

    def __repr__(self) -> str:
        return (f"<SubscribeResult {self.group!r} recovered={self.recovered} position={self.position} "
                f"catchup={self.catchup}>")


async def subscribe(conn: WebSocketConnection, group: str, *, since: Position | None = None,
                    on_publication: Callable[[Delivered], Awaitable[None]] | None = None) -> SubscribeResult:
    """Subscribe a handler's own connection to ``group`` of its tenant (``conn.subscribe``).

    No permission rule is consulted: the handler is server code and decides itself. Without
    ``on_publication`` the catch-up and then every live publication are written to the client as
    ``pub`` pushes (docs/protocol.md); with it they are passed to the callback instead, in the
    same order. Returns once the catch-up has been delivered. Raises ``ValueError`` for a bad
    group name or one subscribed already.
    """
    import asyncio

    bad = validate_group(group)
    if bad is not None:
        raise ValueError(f"cannot subscribe to {group[:40]!r}: {bad.message}")
    session = pubsub_for(conn.ctx.server).session(conn)
    if group in session.subs:
        raise ValueError(f"{group!r} is subscribed already on this connection")
    sub: Subscription = await session.add(group, conn.ctx.request.tenant_id, on_publication=on_publication)
    done: asyncio.Future[SubscribeResult] = asyncio.get_running_loop().create_future()

    async def start() -> None:
        try:
            catch = await session.start(sub, since)
            if catch is None:
                result = SubscribeResult(group, None, None, 0)
            else:
                for p in catch.publications:
                    await sub.deliver(p.data if isinstance(p.data, str) else p.data.decode(), p)
                result = SubscribeResult(group, catch.recovered, catch.position, len(catch.publications))
        except BaseException as exc:
            await session.remove(sub)
            if not done.done():
                done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not done.done():
            done.set_result(result)

    session.call(start)
    return await done


async def unsubscribe(conn: WebSocketConnection, group: str) -> None:
    """End a handler's subscription to ``group`` (no-op when not subscribed)."""
    session = pubsub_for(conn.ctx.server).session(conn)
    sub = session.subs.get(group)
    if sub is not None:
        await session.remove(sub)



def register(server: WebSocketServer, path: str, *, permissions: Any, history: Any,
             middleware: Sequence[Any] | None, authenticated: bool, allowed_scopes: Sequence[str] | None,
             require_all_scopes: bool, host: str | None, tenant: str | None, name: str | None,
             max_subscriptions: int, defined_at: str, options: dict[str, Any]) -> Any:
    """``server.register_pubsub_route``: build the handler (rules and history checked now, so a
    mistake stops start-up with ``ImproperlyConfigured``) and add the route."""
    from django.core.exceptions import ImproperlyConfigured

    from rockstar_ws.pubsub.config import HistoryPolicy

    handler = PubSubHandler(server, permissions, max_subscriptions=max_subscriptions)
    _ = handler.permissions
    service = pubsub_for(server)
    if history is not None:
        given = service.route_history
        if given is not None and given != history:
            raise ImproperlyConfigured(
                f"pub/sub route {path!r} gives another history= than an earlier pub/sub route of this server; "
                "a stream has one history whatever the route, so give it once (or in PUBSUB_HISTORY)")
        service.set_history(HistoryPolicy(history))
        service.route_history = history
    else:
        _ = service.history
    return server._add(path, handler, middleware, host=host, tenant=tenant, authenticated=authenticated,
                       allowed_scopes=tuple(allowed_scopes or ()), require_all_scopes=require_all_scopes,
                       name=name, options=options, defined_at=defined_at)
