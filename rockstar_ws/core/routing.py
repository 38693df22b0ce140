"""The route table: host-specific routes first, then global ones (the reference's lookup order).

Hosts match case-insensitively with the port stripped; ``*.example.com`` matches any subdomain
of example.com (not example.com itself). Paths use Django's path syntax
(``/ws/rooms/<str:room>``); literal paths are found with one dict lookup.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from django.urls.resolvers import RoutePattern

from .errors import ImproperlyConfigured, RouteConflict

if TYPE_CHECKING:
    from .context import Context

__all__ = ["AsgiApp", "Handler", "HandlerSignatureError", "Middleware", "Route", "RouteTable", "is_asgi_app",
           "normalize_host"]

class Handler(Protocol):
    """A route's handler: ``async def handler(ctx, conn)``, or a plain ``def handler(ctx, conn)``
    that runs in a worker thread with a :class:`~rockstar_ws.core.connection.SyncConnection`."""

    def __call__(self, ctx: Context, conn: Any, /) -> Any:
        """Serve one connection until it ends (returning closes it with 1000)."""


class Middleware(Protocol):
    """``async def middleware(ctx, next)``: runs around the rest of the handshake and the
    connection; ``await next(ctx)`` continues, raising ``Deny`` refuses."""

    def __call__(self, ctx: Context, next: Callable[[Context], Awaitable[Any]], /) -> Awaitable[Any]:
        """Call ``next(ctx)`` to go on, or raise ``Deny``."""

# The whole package, not this folder: a registration is "user code" only outside rockstar_ws.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

#: Where a registration was written when no caller frame says it (routes from settings).
registration_site: ContextVar[str | None] = ContextVar("rockstar_ws_registration_site", default=None)


class HandlerSignatureError(ImproperlyConfigured, TypeError):
    """A handler or middleware that cannot be called the way the server calls it.

    Raised at registration, so the mistake shows at start-up with the fix rather than as a
    1011 close on the first connection.
    """


def describe(func: Any) -> str:
    """``module.qualname`` of a handler or middleware, for errors and logs."""
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else getattr(func, "func", func)
    name = str(getattr(target, "__qualname__", None) or type(target).__qualname__)
    module = getattr(target, "__module__", None)
    return f"{module}.{name}" if module else name


def caller_site() -> str:
    """``file:line`` of the first frame outside rockstar_ws: where user code registered a route."""
    site = registration_site.get()
    if site:
        return site
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR) and not filename.startswith("<frozen"):
            return f"{_short(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return "unknown location"


def _short(filename: str) -> str:
    try:
        rel = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if rel.startswith("..") else rel


def _check_signature(func: Any, path: str, role: str, params: str, hint: str = "") -> None:
    """Raise :class:`HandlerSignatureError` unless ``func`` can be called with two positional
    arguments (``ctx, conn`` for a handler, ``ctx, next`` for middleware)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins and C callables have no signature: trust them
        return
    try:
        sig.bind(None, None)
    except TypeError:
        kind = "async def" if _is_async(func) else "def"
        name = getattr(func, "__name__", None) or "handler"
        raise HandlerSignatureError(
            f"{role} {describe(func)}{sig} of {path!r} must take two arguments ({params}); "
            f"write '{kind} {name}({params}):'{hint}") from None


class AsgiApp:
    """Marks ``app`` as an ASGI application to serve a route with, for a callable the automatic
    rule (:func:`is_asgi_app`) cannot tell from a handler: ``register_route(path, AsgiApp(app))``."""

    __slots__ = ("app",)

    def __init__(self, app: Callable[..., Awaitable[Any]]) -> None:
        if not callable(app):
            raise ImproperlyConfigured(f"AsgiApp() takes an ASGI application, not {app!r}")
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"AsgiApp({describe(self.app)})"


def _binds(sig: inspect.Signature, n: int) -> bool:
    try:
        sig.bind(*([None] * n))
    except TypeError:
        return False
    return True


def is_asgi_app(obj: Any) -> bool:
    """True when ``obj`` is an ASGI application to serve a route with, not a rockstar_ws handler.

    The rule, in order: an :class:`AsgiApp`; what Channels' ``Consumer.as_asgi()`` returns (a
    function with a ``consumer_class``); an object Channels routes with (``URLRouter`` and other
    ``_path_routing`` apps); a callable that takes exactly three positional arguments
    (``scope, receive, send``) and cannot be called with two. Everything else is a handler
    (``ctx, conn``); a handler that also accepts a third argument stays a handler.
    """
    if isinstance(obj, AsgiApp):
        return True
    if inspect.isclass(obj):
        return False
    if getattr(obj, "consumer_class", None) is not None or getattr(obj, "_path_routing", False) is True:
        return True
    if not callable(obj):
        return False
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return _binds(sig, 3) and not _binds(sig, 2)


def normalize_host(host: str | None) -> str:
    """Lower-case a Host header value and strip its port and trailing dot ("A.com:80" -> "a.com")."""
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal: [::1]:8000
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def _is_async(func: Any) -> bool:
    """True for ``async def`` functions and objects whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(func):
        return True
    return callable(func) and not inspect.isfunction(func) and inspect.iscoroutinefunction(func.__call__)


def _check_host_pattern(host: str) -> str:
    h = normalize_host(host)
    if not h:
        raise ImproperlyConfigured(f"Host route needs a host name, got {host!r}")
    if "*" in h and (not h.startswith("*.") or "*" in h[2:]):
        raise ImproperlyConfigured(
            f"Wildcard host {host!r}: only a leading '*.' label is allowed (e.g. '*.example.com')")
    return h


@dataclass(slots=True, eq=False)
class Route:
    """One registered route: where it listens, what runs, and what it demands."""

    path: str
    handler: Handler
    middleware: tuple[Middleware, ...] = ()
    host: str | None = None
    tenant: str | None = None
    authenticated: bool = False
    allowed_scopes: tuple[str, ...] = ()
    require_all_scopes: bool = False
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    is_async: bool = True
    #: True when the handler is an ASGI application (a Channels consumer's ``as_asgi()``): it gets
    #: the ``websocket.connect`` and accepts for itself (rockstar_ws.engine.compose).
    asgi: bool = False
    pattern: RoutePattern | None = None
    #: ``file:line`` of the registration (for :class:`RouteConflict` and logs).
    defined_at: str = ""

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ImproperlyConfigured(f"WebSocket route path must start with '/': {self.path!r}")
        if not callable(self.handler):
            raise ImproperlyConfigured(f"Handler for {self.path!r} is not callable: {self.handler!r}")
        if inspect.isclass(self.handler) and hasattr(self.handler, "as_asgi"):
            raise HandlerSignatureError(
                f"Handler {describe(self.handler)} of {self.path!r} is a Channels consumer class; "
                f"register its application: {self.handler.__name__}.as_asgi()")
        self.asgi = is_asgi_app(self.handler)
        self.is_async = self.asgi or _is_async(self.handler)
        if not self.is_async and inspect.isasyncgenfunction(self.handler):
            raise ImproperlyConfigured(f"Handler for {self.path!r} is an async generator; use 'async def'")
        if not self.asgi:
            _check_signature(self.handler, self.path, "Handler", "ctx, conn",
                             hint=" (or an ASGI application taking scope, receive, send; wrap an "
                                  "ambiguous one in rockstar_ws.AsgiApp)")
        for mw in self.middleware:
            if not _is_async(mw):
                raise ImproperlyConfigured(
                    f"Middleware {mw!r} on {self.path!r} must be an 'async def mw(ctx, next)' coroutine function"
                )
            _check_signature(mw, self.path, "Middleware", "ctx, next")
        mode = self.options.get("refusal_mode")
        if mode is not None and mode not in ("http", "close"):
            raise ImproperlyConfigured(f"refusal_mode of {self.path!r} is {mode!r}; use 'http' or 'close'")
        if "<" in self.path:
            self.pattern = RoutePattern(self.path, is_endpoint=True)
        if isinstance(self.allowed_scopes, str):
            raise ImproperlyConfigured(f"allowed_scopes of {self.path!r} must be a list of strings, not a string")
        self.allowed_scopes = tuple(self.allowed_scopes or ())
        self.middleware = tuple(self.middleware or ())

    @property
    def label(self) -> str:
        """A short name for logs and counters: ``host/path`` or ``path``."""
        if self.host:
            return f"{self.host}{self.path}"
        return f"tenant:{self.tenant}{self.path}" if self.tenant else self.path


class _PathTable:
    __slots__ = ("exact", "patterns")

    def __init__(self) -> None:
        self.exact: dict[str, Route] = {}
        self.patterns: list[Route] = []

    def add(self, route: Route, where: str) -> None:
        if route.pattern is None:
            first = self.exact.get(route.path)
        else:
            first = next((r for r in self.patterns if r.path == route.path), None)
        if first is not None:
            raise RouteConflict(
                f"WebSocket route {where}{route.path!r} is registered twice: first at "
                f"{first.defined_at or 'unknown location'} ({describe(first.handler)}), again at "
                f"{route.defined_at or 'unknown location'} ({describe(route.handler)}). "
                "Remove one registration, or give one of them another path or host.")
        if route.pattern is None:
            self.exact[route.path] = route
        else:
            self.patterns.append(route)

    def find(self, path: str) -> tuple[Route, dict[str, Any]] | None:
        route = self.exact.get(path)
        if route is not None:
            return route, {}
        for route in self.patterns:
            m = route.pattern.match(path)  # type: ignore[union-attr]
            if m is not None:
                return route, m[2]
        return None

    def __iter__(self):
        yield from self.exact.values()
        yield from self.patterns


class RouteTable:
    """Routes by host (exact, then wildcard, longest suffix first), then tenant, then global."""

    def __init__(self) -> None:
        self.global_routes = _PathTable()
        self.hosts: dict[str, _PathTable] = {}
        self.wildcards: list[tuple[str, _PathTable]] = []  # (".example.com", table), longest first
        self.tenants: dict[str, _PathTable] = {}
        #: Every registered path, in registration order (a path of several hosts once).
        self._paths: dict[str, None] = {}
        #: Where the paths were handed out (``seal``): a new path after it is an error.
        self._sealed_at: str | None = None

    def seal(self, site: str) -> list[str]:
        """The registered paths (literal ones first, then patterns, each in registration order),
        handed out at ``site``: from now on a route on a path not in the list raises
        :class:`~django.core.exceptions.ImproperlyConfigured` (``server.urlpatterns``)."""
        self._sealed_at = site
        paths = list(self._paths)
        return [p for p in paths if "<" not in p] + [p for p in paths if "<" in p]

    def add(self, route: Route) -> None:
        """Add a route; the same host (or tenant) and path twice raises :class:`RouteConflict`."""
        if self._sealed_at is not None and route.path not in self._paths:
            raise ImproperlyConfigured(
                f"WebSocket route {route.path!r} (registered at {route.defined_at or 'unknown location'}) "
                f"comes after server.urlpatterns was read at {self._sealed_at}: a URLRouter built from that "
                "list can never reach it. Register every route first (ws_routes.py modules are loaded in "
                "AppConfig.ready()), or read urlpatterns again and rebuild the router.")
        if route.host:
            host = _check_host_pattern(route.host)
            route.host = host
            if host.startswith("*."):
                suffix = host[1:]
                table = next((t for s, t in self.wildcards if s == suffix), None)
                if table is None:
                    table = _PathTable()
                    self.wildcards.append((suffix, table))
                    self.wildcards.sort(key=lambda item: -len(item[0]))
                table.add(route, f"on host {host!r} ")
            else:
                self.hosts.setdefault(host, _PathTable()).add(route, f"on host {host!r} ")
        elif route.tenant:
            self.tenants.setdefault(route.tenant, _PathTable()).add(route, f"for tenant {route.tenant!r} ")
        else:
            self.global_routes.add(route, "")
        self._paths[route.path] = None

    def find(self, host: str, path: str, tenant_id: str | None = None) -> tuple[Route, dict[str, Any]] | None:
        """The route for a normalized host and a path, or None (the reference's 404)."""
        if self.hosts:
            table = self.hosts.get(host)
            if table is not None:
                found = table.find(path)
                if found is not None:
                    return found
        for suffix, table in self.wildcards:
            if host.endswith(suffix) and len(host) > len(suffix):
                found = table.find(path)
                if found is not None:
                    return found
        if tenant_id is not None and self.tenants:
            table = self.tenants.get(tenant_id)
            if table is not None:
                found = table.find(path)
                if found is not None:
                    return found
        return self.global_routes.find(path)

    def __iter__(self) -> Iterator[Route]:
        yield from self.global_routes
        for table in self.hosts.values():
            yield from table
        for _, table in self.wildcards:
            yield from table
        for table in self.tenants.values():
            yield from table

    def __len__(self) -> int:
        return sum(1 for _ in self)
