"""The context a handler and its middleware receive: the request facts and the connection's life."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .logsafe import escape

if TYPE_CHECKING:
    from ..engine.server import WebSocketServer
    from .connection import WebSocketConnection
    from .routing import Route

__all__ = ["Context", "Headers", "Request"]


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only view of the handshake headers (repeated headers joined by ", ")."""

    __slots__ = ("_raw", "_map")

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None) -> None:
        self._raw = raw or []
        self._map: dict[str, str] | None = None

    def _build(self) -> dict[str, str]:
        if self._map is None:
            m: dict[str, str] = {}
            for k, v in self._raw:
                key = k.decode("latin-1").lower()
                val = v.decode("latin-1")
                m[key] = f"{m[key]}, {val}" if key in m else val
            self._map = m
        return self._map

    def __getitem__(self, key: str) -> str:
        return self._build()[key.lower()]

    def get(self, key: str, default: Any = None) -> Any:
        return self._build().get(key.lower(), default)

    def getlist(self, key: str) -> list[str]:
        """Every value of a header, in order."""
        k = key.lower().encode("latin-1")
        return [v.decode("latin-1") for n, v in self._raw if n.lower() == k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return f"Headers({self._build()!r})"


def _addr(pair: Any) -> str:
    if not pair:
        return ""
    host, port = pair[0], pair[1] if len(pair) > 1 else None
    if host and ":" in str(host):
        host = f"[{host}]"
    return f"{host}:{port}" if port is not None else str(host)


@dataclass(slots=True, eq=False)
class Request:
    """What the handshake said, plus what authentication and tenancy learned about it.

    The reference's ``ctx.Request()``: ``user_id``, ``tenant_id`` and ``access_token`` are set
    by authentication (and tenant resolution) before any middleware runs.
    """

    path: str
    host: str
    remote_addr: str
    local_addr: str
    headers: Headers
    query_string: str = ""
    path_params: dict[str, Any] = field(default_factory=dict)
    subprotocols: list[str] = field(default_factory=list)
    user_id: str | None = None
    tenant_id: str | None = None
    access_token: str | None = None
    scopes: frozenset[str] = frozenset()
    claims: dict[str, Any] = field(default_factory=dict)
    _query: dict[str, list[str]] | None = None

    @property
    def remote_ip(self) -> str:
        """The client's IP address without the port."""
        host = self.remote_addr.rsplit(":", 1)[0]
        return host.strip("[]")

    @property
    def query(self) -> dict[str, list[str]]:
        """Query parameters: name -> list of values (blank values kept)."""
        if self._query is None:
            q: dict[str, list[str]] = {}
            for k, v in parse_qsl(self.query_string, keep_blank_values=True):
                q.setdefault(k, []).append(v)
            self._query = q
        return self._query

    def query_param(self, name: str, default: str | None = None) -> str | None:
        """The first value of one query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def origin(self) -> str | None:
        """The handshake's ``Origin`` header, if any."""
        return self.headers.get("origin")

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any], host: str) -> Request:
        """Build the request facts from an ASGI websocket scope."""
        qs = scope.get("query_string", b"")
        return cls(
            path=scope.get("path", ""),
            host=host,
            remote_addr=_addr(scope.get("client")),
            local_addr=_addr(scope.get("server")),
            headers=Headers(scope.get("headers")),
            query_string=qs.decode("latin-1") if isinstance(qs, bytes) else str(qs),
            subprotocols=list(scope.get("subprotocols") or ()),
        )


class Context:
    """Passed to middleware and handlers: ``ctx.request``, ``ctx.user``, ``ctx.tenant`` and the
    connection's life (``ctx.done``, ``await ctx.wait_closed()``).

    ``ctx.state`` is a plain dict for middleware to hand data to the handler.
    """

    __slots__ = ("request", "user", "tenant", "scope", "server", "route", "state", "connection",
                 "subprotocol", "upgrader", "_done")

    #: The route, once the handshake's ``route`` stage found it (a stage before it must not read it).
    route: Route

    def __init__(self, request: Request, scope: Mapping[str, Any], server: WebSocketServer,
                 route: Route | None = None) -> None:
        self.request = request
        self.scope = scope
        #: The server serving this connection, for handlers (``ctx.server.broadcast(...)``).
        self.server = server
        if route is not None:
            self.route = route
        self.user: Any = scope.get("user") or _anonymous()
        self.tenant: Any = None
        self.state: dict[str, Any] = {}
        self.connection: WebSocketConnection | None = None
        #: The subprotocol the server accepts with (None: none). Auth may set it.
        self.subprotocol: str | None = None
        #: The limits of this connection: route upgrader over server upgrader over settings.
        self.upgrader: Any = None
        self._done: asyncio.Event | None = None

    @property
    def done(self) -> asyncio.Event:
        """An event set when the connection has ended (the reference's context cancellation)."""
        if self._done is None:
            self._done = asyncio.Event()
        return self._done

    @property
    def closed(self) -> bool:
        """True once the connection has ended."""
        return self._done is not None and self._done.is_set()

    async def wait_closed(self) -> None:
        """Wait until the connection has ended."""
        await self.done.wait()

    def __repr__(self) -> str:
        r = self.request
        return f"<Context {escape(r.host)}{escape(r.path)} user={escape(repr(r.user_id))}>"


def _anonymous() -> Any:
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()
