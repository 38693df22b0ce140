"""Composition with Channels: rockstar_ws routes as Channels URL routes, ASGI applications (a
Channels consumer's ``as_asgi()``) as route handlers, and the ASGI side of such a connection.

See docs/channels.md for the rules and the reasons:

- ``server.urlpatterns`` is a list of ``django.urls.path()`` entries, one per registered path,
  each a :class:`RouteEntry` that runs the whole handshake pipeline (host routes, tenants, JWT,
  limits, middleware) on the *live* route table. Registering a new path after the list was read
  raises (:meth:`~rockstar_ws.core.routing.RouteTable.seal`): a router built from the list could
  never reach it.
- An ASGI application registered as a handler gets the ``websocket.connect`` once every stage and
  middleware passed, and accepts (or refuses) for itself: :class:`AsgiSide` forwards its
  ``websocket.accept`` and ``websocket.close`` and feeds it the pump's messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from django.urls.resolvers import RoutePattern

from ..core.errors import ConnectionClosed, Deny
from ..core.messages import BinaryMessage, CloseCode, TextMessage
from ..handshake.precheck import check_selected_subprotocol

if TYPE_CHECKING:
    from ..core.connection import WebSocketConnection
    from ..core.context import Context
    from .server import WebSocketServer

__all__ = ["AsgiSide", "RouteEntry", "relative_path", "rockstar_scope"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def relative_path(scope: dict[str, Any]) -> str:
    """The path rockstar_ws routes on: ``scope["path"]`` without the ``root_path`` prefix (the rule
    Channels' ``URLRouter`` applies; a path that does not start with it is used whole)."""
    path = str(scope.get("path", ""))
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root):]
        if not path.startswith("/"):
            path = "/" + path
    return path


class RouteEntry:
    """The ASGI application behind one ``server.urlpatterns`` entry: the rockstar_ws handshake
    and handler for the registered path ``route_path`` (every host and tenant route of it).

    ``URLRouter`` chose the entry by path only; the live route table then picks the route of the
    host and tenant, as when the server is the ASGI application itself.
    """

    def __init__(self, server: WebSocketServer, route_path: str) -> None:
        self.server = server
        self.route_path = route_path
        self._pattern = RoutePattern(route_path[1:], is_endpoint=True) if "<" in route_path else None

    def path_for(self, scope: dict[str, Any]) -> str:
        """The path to look up: the registered one for a literal route; for a pattern, the suffix of
        the request path the pattern matches with the values ``URLRouter`` put in ``url_route``
        (the entry may sit under a prefix of an outer router)."""
        if self._pattern is None:
            return self.route_path
        full = relative_path(scope)
        wanted = (scope.get("url_route") or {}).get("kwargs") or {}
        first: str | None = None
        for i, char in enumerate(full):
            if char != "/":
                continue
            match = self._pattern.match(full[i + 1:])
            if match is None:
                continue
            if first is None:
                first = full[i:]
            if all(wanted.get(k) == v for k, v in match[2].items()):
                return full[i:]
        return first or full

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await self.server.serve(scope, receive, send, path=self.path_for(scope))

    def __repr__(self) -> str:
        return f"<RouteEntry {self.route_path!r} of {self.server.name!r}>"


def rockstar_scope(ctx: Context) -> dict[str, Any]:
    """The scope an ASGI handler gets: the connection's scope, plus ``user`` (the JWT user on an
    authenticated route, else the user an outer ``AuthMiddlewareStack`` set, else AnonymousUser),
    ``rockstar`` (what the handshake learned) and ``url_route`` (the router's values, then the
    route's path parameters)."""
    request = ctx.request
    scope = dict(ctx.scope)
    outer = scope.get("url_route") or {}
    scope["user"] = ctx.user
    scope["url_route"] = {"args": tuple(outer.get("args", ())),
                          "kwargs": {**(outer.get("kwargs") or {}), **request.path_params}}
    scope["rockstar"] = {
        "server": ctx.server.name,
        "route": ctx.route.label,
        "user_id": request.user_id,
        "tenant_id": request.tenant_id,
        "scopes": sorted(request.scopes),
        "claims": dict(request.claims),
        "path_params": dict(request.path_params),
        "authenticated": ctx.route.authenticated,
    }
    return scope


class AsgiSide:
    """The ASGI application's view of one connection: its ``receive`` and ``send``.

    ``receive`` gives ``websocket.connect`` first, then the client's messages out of the
    connection's inbox (filled by the pump, after the size and rate limits), then one
    ``websocket.disconnect`` with the close code for every later call. ``send`` forwards the
    accept (the application's subprotocol, else the one rockstar_ws chose), writes through the
    connection's write limits, and closes through the connection's one close path.
    """

    def __init__(self, ctx: Context, conn: WebSocketConnection, send: Send,
                 on_accept: Callable[[str | None], bool]) -> None:
        self.ctx = ctx
        self.conn = conn
        self._send = send
        self._on_accept = on_accept
        self._connect_given = False
        #: Set when the application accepted or refused (or the handshake was abandoned).
        self.decided = asyncio.Event()
        self.accepted = False
        #: The refusal the application asked for (a close, or a denial response) before accepting.
        self.refusal: Deny | None = None
        #: The server had ended the handshake itself when the accept went out (``on_accept`` False).
        self.ended_by_server = False
        self._gone = False

    def abandon(self) -> None:
        """Make every later ``receive`` a disconnect (the handshake ended without an accept)."""
        self._gone = True
        self.decided.set()

    async def receive(self) -> dict[str, Any]:
        """The next ASGI event for the application."""
        if not self._connect_given:
            self._connect_given = True
            return {"type": "websocket.connect"}
        if not self.accepted:
            await self.decided.wait()
        if self.accepted:
            try:
                mtype, data = await self.conn.read_message()
            except ConnectionClosed:
                pass
            else:
                if mtype == TextMessage:
                    return {"type": "websocket.receive", "text": data}
                return {"type": "websocket.receive", "bytes": data}
        return {"type": "websocket.disconnect", "code": self.conn.close_code or CloseCode.ABNORMAL,
                "reason": self.conn.close_reason}

    async def send(self, message: dict[str, Any]) -> None:
        """An ASGI event from the application."""
        kind = message.get("type")
        if kind == "websocket.accept":
            if self.accepted or self.decided.is_set():
                raise RuntimeError("websocket.accept after the handshake was accepted or refused")
            subprotocol = message.get("subprotocol") or self.ctx.subprotocol
            check_selected_subprotocol(self.ctx.scope, subprotocol)  # Deny(400): a name not offered
            accept: dict[str, Any] = {"type": "websocket.accept"}
            if subprotocol:
                accept["subprotocol"] = subprotocol
            if message.get("headers"):
                accept["headers"] = message["headers"]
            self.ctx.subprotocol = subprotocol
            await self._send(accept)
            if not self._on_accept(subprotocol):  # dropped: nothing counted, the app sees a disconnect
                self.ended_by_server = True
                self.abandon()
                return
            self.accepted = True
            self.decided.set()
        elif kind == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            text = message.get("text")
            try:
                if text is not None:
                    await self.conn.write_message(TextMessage, text)
                else:
                    await self.conn.write_message(BinaryMessage, message.get("bytes") or b"")
            except ConnectionClosed:
                pass  # the connection ended (the client left, a limit, a tenant close): nothing to write to
        elif kind == "websocket.close":
            if self.accepted:
                await self.conn.close(int(message.get("code") or CloseCode.NORMAL), message.get("reason") or "")
            elif not self.decided.is_set():
                self.refusal = Deny(403, "refused by the application",
                                    log_detail="the ASGI application closed before accepting")
                self.abandon()
        elif kind == "websocket.http.response.start":
            if not self.accepted and not self.decided.is_set():
                status = int(message.get("status") or 403)
                self.refusal = Deny(status if 400 <= status <= 599 else 403, "refused by the application",
                                    log_detail=f"the ASGI application answered {status} before accepting")
                self.abandon()
        elif kind == "websocket.http.response.body":
            pass  # the refusal's body is rockstar_ws's (servers/refusals.py), as for every refusal
        else:
            raise ValueError(f"unknown ASGI message type {kind!r} from the application of {self.ctx.route.label}")
