"""The WebSocket server: route registration (the reference's ``WebSocketServer``) and the ASGI app.

``WebSocketServer`` is itself an ASGI application (the twin of ``HandleUpgrade``): put it
under ``"websocket"`` in Channels' ``ProtocolTypeRouter``, optionally wrapped in Channels'
own middleware (``AuthMiddlewareStack``, ``OriginValidator``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from ..auth.stage import authentication_stage
from ..conf import ws_settings
from ..core.context import Context
from ..core.errors import ImproperlyConfigured
from ..core.messages import CloseCode
from ..core.routing import Handler, Middleware, Route, RouteTable, caller_site
from ..handshake import pipeline as stages
from ..handshake.pipeline import Pipeline, Stage, Step, SyncStage
from ..handshake.precheck import precheck
from ..limits.ratelimit import HandshakeRateLimiter
from ..limits.upgrader import Upgrader, effective_upgrader
from ..tenants import stages as tenant_stages
from ..users.delivery import UserDelivery  # send_to_user / disconnect_user (docs/users.md)
from .consumer import RockstarConsumer
from .stats import Stats

if TYPE_CHECKING:
    from ..auth.manager import AuthManager
    from ..core.connection import WebSocketConnection
    from ..core.context import Request

__all__ = ["WebSocketServer", "default_server"]

logger = logging.getLogger("rockstar_ws")

Release = Callable[[], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class WebSocketServer(UserDelivery):
    """Routes, their handlers and middleware, and the connections they serve.

    ``auth_manager`` validates tokens on authenticated routes; None means the one named by
    ``ROCKSTAR_WS["AUTH_MANAGER"]`` (SimpleJWT access tokens by default).
    """

    def __init__(self, auth_manager: AuthManager | None = None, *, upgrader: Upgrader | None = None,
                 middleware: Sequence[Middleware] | None = None, name: str = "default",
                 use_settings: bool = False, fallback: ASGIApp | None = None) -> None:
        self.name = name
        #: The ASGI application that gets the handshakes no route matches, instead of a 404 (e.g.
        #: the project's Channels ``URLRouter``); only the host, handshake-rate and tenant checks
        #: run before it (docs/channels.md). None: 404.
        self.fallback = fallback
        self.routes = RouteTable()
        self._auth_manager = auth_manager
        self.upgrader = upgrader or Upgrader()
        self._middleware = tuple(middleware or ())
        self._use_settings = use_settings
        self._connections: set[WebSocketConnection] = set()
        #: Coroutine functions run once when the process shuts down cleanly, after the open
        #: connections got their 1001 (daphne's SIGTERM; rockstar_ws.servers.shutdown).
        self.shutdown_hooks: list[Callable[[], Awaitable[Any]]] = []
        self.stats = Stats()
        self._executor: ThreadPoolExecutor | None = None
        self._layer: Any = None
        self._layer_loaded = False
        #: Create a Channels channel per connection (``conn.channel_name``); off saves a listener task
        #: each on a layer that cannot attach channels (rockstar_ws.layers.InMemoryChannelLayer can).
        self.per_connection_channel = True
        #: Resolves a request's host to a tenant (set up by rockstar_ws.tenants when configured).
        self.tenant_resolver: Callable[[Request], Awaitable[Any]] | None = None
        self._handshake_limiter: HandshakeRateLimiter | None = None
        #: The handshake's stages in order (rockstar_ws.handshake.pipeline); ``add_stage`` adds one.
        self.pipeline = Pipeline(self.default_stages())

    def default_stages(self) -> list[Step]:
        """The handshake stages every server starts with, in the order they run (the features
        meet here: this is the one place that knows them all). ``admission`` is added by the
        live registry (rockstar_ws.registry.install) when ``LIVE_REGISTRY`` is on."""
        resolver = lambda: self.tenant_resolver  # noqa: E731 - read per handshake: tenancy may be turned on later
        return [
            Step("host_and_rate", stages.host_and_rate(self.check_handshake_rate)),
            Step("tenant", tenant_stages.resolve_stage(resolver)),
            Step("route", stages.route(self.routes)),
            Step("limits", stages.limits(lambda: self.upgrader)),
            Step("route_hook", stages.route_hook),
            Step("tenant_settings", tenant_stages.settings_stage),
            Step("origin_and_subprotocol", stages.origin_and_subprotocol),
            Step("authentication", authentication_stage(lambda: self.auth_manager, lambda: self._auth_manager)),
            Step("tenant_binding", tenant_stages.binding_stage(resolver)),
            Step("selected_subprotocol", stages.selected_subprotocol),
        ]

    def add_stage(self, stage: Stage | SyncStage, *, name: str | None = None, before: str | None = None,
                  after: str | None = None) -> Step:
        """Add a handshake stage, ``async def stage(ctx) -> release | None`` that refuses by
        raising ``Deny``: by default after the token checks and before ``admission`` (see
        :meth:`Pipeline.add` and docs/architecture.md)."""
        return self.pipeline.add(stage, name=name, before=before, after=after)

    # -- registration (the reference's Register* methods) -------------------------------
    def _add(self, path: str, handler: Handler, middleware: Sequence[Middleware] | None = None, **kw: Any) -> Route:
        kw.setdefault("defined_at", caller_site())
        route = Route(path=path, handler=handler, middleware=tuple(middleware or ()), **kw)
        self.routes.add(route)
        return route

    def register_route(self, path: str, handler: Handler, middleware: Sequence[Middleware] | None = None,
                       *, name: str | None = None, tenant: str | None = None, **options: Any) -> Route:
        """Register a route on every host (or, with ``tenant=``, on every host of one tenant).

        ``handler`` is ``async def handler(ctx, conn)`` (or a plain ``def``), or an ASGI
        application such as a Channels consumer's ``as_asgi()``: that one runs after the handshake
        checks and accepts for itself (the rule: :func:`rockstar_ws.core.routing.is_asgi_app`;
        docs/channels.md). The same holds for every ``register_*`` method and ``@route``."""
        return self._add(path, handler, middleware, name=name, tenant=tenant, options=options)

    def register_host_route(self, host: str, path: str, handler: Handler,
                            middleware: Sequence[Middleware] | None = None, *, name: str | None = None,
                            **options: Any) -> Route:
        """Register a route for one host (``"tenant1.example.com"`` or ``"*.example.com"``)."""
        return self._add(path, handler, middleware, host=host, name=name, options=options)

    def register_authenticated_route(self, path: str, handler: Handler,
                                     middleware: Sequence[Middleware] | None = None,
                                     allowed_scopes: Sequence[str] | None = None, *,
                                     require_all_scopes: bool = False, tenant: str | None = None,
                                     name: str | None = None, **options: Any) -> Route:
        """Register a route that admits only a valid access token holding one of ``allowed_scopes``
        (all of them with ``require_all_scopes=True``; any valid token when none are listed)."""
        return self._add(path, handler, middleware, authenticated=True, allowed_scopes=allowed_scopes or (),
                         require_all_scopes=require_all_scopes, tenant=tenant, name=name, options=options)

    def register_authenticated_host_route(self, host: str, path: str, handler: Handler,
                                          middleware: Sequence[Middleware] | None = None,
                                          allowed_scopes: Sequence[str] | None = None, *,
                                          require_all_scopes: bool = False, name: str | None = None,
                                          **options: Any) -> Route:
        """The authenticated twin of :meth:`register_host_route`."""
        return self._add(path, handler, middleware, host=host, authenticated=True,
                         allowed_scopes=allowed_scopes or (), require_all_scopes=require_all_scopes,
                         name=name, options=options)

    def route(self, path: str, *, host: str | None = None, tenant: str | None = None,
              middleware: Sequence[Middleware] | None = None, authenticated: bool = False,
              allowed_scopes: Sequence[str] | None = None, require_all_scopes: bool = False,
              name: str | None = None, **options: Any) -> Callable[[Handler], Handler]:
        """Decorator form: ``@server.route("/ws/echo")`` registers the decorated handler."""
        def decorator(handler: Handler) -> Handler:
            self._add(path, handler, middleware, host=host, tenant=tenant,
                      authenticated=authenticated or bool(allowed_scopes),
                      allowed_scopes=allowed_scopes or (), require_all_scopes=require_all_scopes,
                      name=name, options=options)
            return handler
        return decorator

    # -- composition with Channels (engine/compose.py, docs/channels.md) --------------------
    @property
    def urlpatterns(self) -> list[Any]:
        """Channels URL routes (``django.urls.path`` entries), one per registered path, each
        running this server's handshake and handler: ``URLRouter([*ws.urlpatterns, ...])``.

        Read it once Django is set up (after ``get_asgi_application()`` in asgi.py, so every
        ``ws_routes.py`` module has registered); earlier raises. A route on a new path registered
        after it was read raises too: the router built from the list would never reach it.
        Host, tenant and authenticated routes of one path share its entry (the host is chosen
        inside, from the live table)."""
        from django.apps import apps
        from django.urls import path as url_path

        from .compose import RouteEntry

        if not apps.ready:
            raise ImproperlyConfigured(
                "server.urlpatterns was read before Django was set up: call get_asgi_application() (or "
                "django.setup()) first, so the ws_routes.py modules have registered their routes")
        return [url_path(p[1:], RouteEntry(self, p)) for p in self.routes.seal(caller_site())]  # type: ignore[arg-type]  # an ASGI app, as Channels routes

    # -- pub/sub hook (rockstar_ws/pubsub/route.py, docs/protocol.md) ---------------------
    def register_pubsub_route(self, path: str, *, permissions: Any = None, history: Any = None,
                              middleware: Sequence[Middleware] | None = None, authenticated: bool = False,
                              allowed_scopes: Sequence[str] | None = None, require_all_scopes: bool = False,
                              host: str | None = None, tenant: str | None = None, name: str | None = None,
                              max_subscriptions: int = 100, **options: Any) -> Route:
        """Register a route speaking the pub/sub protocol (``rockstar.pubsub.v1``, docs/protocol.md).

        ``permissions``: a ``Permissions``, a list of ``Rule`` or of settings-style dicts (None:
        ``PUBSUB_PERMISSIONS``). ``history``: a ``PUBSUB_HISTORY``-shaped dict for this server's
        streams (None: the setting). ``authenticated``/``allowed_scopes``/``host`` as for other routes.
        """
        from ..pubsub.route import register

        return register(self, path, permissions=permissions, history=history, middleware=middleware,
                        authenticated=authenticated or bool(allowed_scopes), allowed_scopes=allowed_scopes,
                        require_all_scopes=require_all_scopes, host=host, tenant=tenant, name=name,
                        max_subscriptions=max_subscriptions, defined_at=caller_site(), options=options)

    def register_authenticated_pubsub_route(self, path: str, allowed_scopes: Sequence[str] | None = None,
                                            **kw: Any) -> Route:
        """The authenticated twin of :meth:`register_pubsub_route` (a valid token is required)."""
        return self.register_pubsub_route(path, authenticated=True, allowed_scopes=allowed_scopes, **kw)

    def register_pubsub_host_route(self, host: str, path: str, **kw: Any) -> Route:
        """:meth:`register_pubsub_route` for one host (``"*.example.com"`` too)."""
        return self.register_pubsub_route(path, host=host, **kw)

    def register_authenticated_pubsub_host_route(self, host: str, path: str,
                                                 allowed_scopes: Sequence[str] | None = None, **kw: Any) -> Route:
        """The authenticated twin of :meth:`register_pubsub_host_route`."""
        return self.register_pubsub_route(path, host=host, authenticated=True, allowed_scopes=allowed_scopes, **kw)

    async def publish(self, group: str, data: Any, *, tenant: str | None = None) -> Any:
        """Publish JSON ``data`` to pub/sub ``group`` of ``tenant`` (None: connections of no tenant),
        through the history when one is configured, in every process. Returns a ``PublishResult``."""
        from ..pubsub.service import pubsub_for

        return await pubsub_for(self).publish(group, data, tenant=tenant)

    def publish_sync(self, group: str, data: Any, *, tenant: str | None = None) -> Any:
        """Blocking :meth:`publish` for Django views, signals and management commands."""
        from asgiref.sync import async_to_sync

        return async_to_sync(self.publish)(group, data, tenant=tenant)

    def set_upgrader(self, upgrader: Upgrader | None = None, **fields: Any) -> Upgrader:
        """Replace the upgrader (``set_upgrader(Upgrader(...))``) or change some of its fields."""
        if upgrader is not None and fields:
            upgrader = upgrader.replace(**fields)
        elif upgrader is None:
            upgrader = self.upgrader.replace(**fields)
        if not isinstance(upgrader, Upgrader):
            raise TypeError(f"set_upgrader() takes an Upgrader, not {type(upgrader).__name__}")
        self.upgrader = upgrader
        return upgrader

    # -- live connections ----------------------------------------------------------------
    def get_connections(self) -> int:
        """Live connections of this server in this process (a real count)."""
        return len(self._connections)

    @property
    def connections(self) -> frozenset[WebSocketConnection]:
        """A snapshot of this server's live connections in this process."""
        return frozenset(self._connections)

    def on_shutdown(self, hook: Callable[[], Awaitable[Any]]) -> None:
        """Run ``await hook()`` once when the process shuts down cleanly (daphne on SIGTERM),
        after every open connection was sent its 1001; a hook added twice runs once."""
        if hook not in self.shutdown_hooks:
            self.shutdown_hooks.append(hook)

    def _opened(self, conn: WebSocketConnection) -> None:
        self._connections.add(conn)
        self.stats.opened()

    def _closed(self, conn: WebSocketConnection) -> None:
        if conn in self._connections:
            self._connections.discard(conn)
            self.stats.closed(conn.close_code)

    # -- broadcast groups (groups.py, docs/broadcast.md) ---------------------------------
    async def broadcast(self, group: str, message_type: int, data: str | bytes, exclude: Any = None,
                        *, strict: bool = False) -> int:
        """Send one message to every member of ``group`` in every process, exactly once each.

        ``exclude`` is a connection (or several) to skip, e.g. the sender. Returns how many members
        in this process were written to. When the channel layer fails, local members still get the
        message and the failure is logged at ERROR; ``strict=True`` waits for the layer and raises
        :class:`~rockstar_ws.groups.BroadcastError` instead.
        """
        from .. import groups
        from ..pubsub.service import broadcast_hook  # a pub/sub group with history stores first

        stored = await broadcast_hook(self, group, message_type, data)
        if stored is not None and not groups.is_group_name(group):
            return stored
        return await groups.broadcast(self, group, message_type, data, exclude, strict=strict) + (stored or 0)

    def broadcast_sync(self, group: str, message_type: int, data: str | bytes, exclude: Any = None,
                       *, strict: bool = False) -> int:
        """Blocking :meth:`broadcast` for Django views, signals and management commands."""
        from asgiref.sync import async_to_sync

        return async_to_sync(self.broadcast)(group, message_type, data, exclude, strict=strict)

    async def group_size(self, group: str, *, strict: bool = False) -> int:
        """Members of ``group`` in every process (other processes' counts are usually a fraction
        of a second old). If the channel layer cannot be read: this process's members and a
        warning in the log (``strict=True`` raises :class:`~rockstar_ws.groups.BroadcastError`)."""
        from .. import groups

        return await groups.group_size(self, group, strict=strict)

    def local_group_size(self, group: str) -> int:
        """Members of ``group`` in this process."""
        from ..groups import current_hub

        hub = current_hub(self)
        return hub.local_size(group) if hub is not None else 0

    # -- presence (hook: rockstar_ws/presence/service.py, docs/presence.md) ---------------
    async def presence(self, group: str) -> list[Any]:
        """The members of ``group`` joined with ``presence=True``, in every process, oldest first
        (:class:`~rockstar_ws.presence.Member`; ``member.public_dict()`` for JSON)."""
        from ..presence import service

        return await service.presence(self, group)

    async def presence_stats(self, group: str) -> Any:
        """``PresenceStats(connections, users)`` of ``group``, in every process."""
        from ..presence import service

        return await service.presence_stats(self, group)

    def presence_sync(self, group: str) -> list[Any]:
        """Blocking :meth:`presence` for Django views, signals and management commands."""
        from asgiref.sync import async_to_sync

        return async_to_sync(self.presence)(group)

    def presence_stats_sync(self, group: str) -> Any:
        """Blocking :meth:`presence_stats`."""
        from asgiref.sync import async_to_sync

        return async_to_sync(self.presence_stats)(group)

    # -- what the consumer asks of the server ---------------------------------------------
    @property
    def auth_manager(self) -> AuthManager:
        """The auth manager (given, or the one named in settings)."""
        if self._auth_manager is None:
            cls = ws_settings.AUTH_MANAGER
            self._auth_manager = cls() if isinstance(cls, type) else cls
        return self._auth_manager

    @auth_manager.setter
    def auth_manager(self, value: AuthManager | None) -> None:
        """Set the auth manager (None: the one named in settings, loaded on first use)."""
        self._auth_manager = value

    @property
    def tenancy_enabled(self) -> bool:
        """True when a tenant resolver is set up."""
        return self.tenant_resolver is not None

    async def resolve_tenant(self, request: Request) -> Any:
        """The tenant of the request's host (sets ``request.tenant_id``), or None."""
        if self.tenant_resolver is None:
            return None
        return await self.tenant_resolver(request)

    def precheck(self, scope: dict[str, Any], request: Request) -> None:
        """The checks that cost no lookup, run before the tenant and route lookups, in order:
        the ``Host`` header against ``ALLOWED_HOSTS`` (400), the client IP's handshake rate
        (429; every handshake past the host check counts, unknown paths too), and the
        subprotocol header (400). Raises :class:`Deny`."""
        precheck(scope, request, self.check_handshake_rate)

    def control_hook(self, ctx: Context, conn: WebSocketConnection) -> Callable[[str], Awaitable[None]] | None:
        """The per-connection hook the pump calls for token-refresh messages, or None (the
        connection has no expiring token; see rockstar_ws.auth.TokenGuard)."""
        from ..auth.manager import GUARD_KEY

        guard = ctx.state.get(GUARD_KEY)
        return guard.start(conn) if guard is not None else None

    def _global_middleware(self) -> tuple[Middleware, ...]:
        if not self._use_settings:
            return self._middleware
        return self._middleware + ws_settings.MIDDLEWARE

    def middleware_chain(self, route: Route, inner: Callable[[Context], Awaitable[None]]
                         ) -> Callable[[Context], Awaitable[Any]]:
        """Compose global then route middleware around ``inner``; the first listed is outermost."""
        chain: Callable[[Context], Awaitable[Any]] = inner
        for mw in reversed(self._global_middleware() + route.middleware):
            chain = _bind(mw, chain)
        return chain

    @property
    def channel_layer(self) -> Any:
        """The Channels layer named by ``ROCKSTAR_WS["CHANNEL_LAYER"]`` (None if not configured)."""
        if not self._layer_loaded:
            from channels.layers import get_channel_layer

            self._layer = get_channel_layer(ws_settings.CHANNEL_LAYER)
            self._layer_loaded = True
        return self._layer

    @property
    def max_message_size(self) -> int:
        """The upgrader's message size limit in bytes (0: none), settings included."""
        return effective_upgrader(None, self.upgrader).max_message_size or 0

    # -- protection (docs/protection.md) ----------------------------------------------------
    def check_handshake_rate(self, request: Request | Context) -> None:
        """Count a handshake against its client IP's bucket (per process); ``Deny(429)`` over it.

        Takes the handshake's :class:`Request` (or a :class:`Context`, for its request)."""
        rate, burst, exempt = ws_settings.HANDSHAKE_RATE, ws_settings.HANDSHAKE_BURST, ws_settings.HANDSHAKE_RATE_EXEMPT
        if not rate:
            return
        limiter = self._handshake_limiter
        if limiter is None or not limiter.built_from(rate, burst, exempt):  # new, or settings changed
            limiter = self._handshake_limiter = HandshakeRateLimiter(rate, burst, exempt)
        limiter.check((request.request if isinstance(request, Context) else request).remote_ip)

    def new_rate_limiter(self, conn: WebSocketConnection | None = None) -> Any:
        """The connection's guard when the pump must see each message (rate limit or idle
        timeout), else None. It is ``conn.guard``, which also guards writes."""
        guard = conn.guard if conn is not None else None
        return guard if guard is not None and guard.watches_messages else None

    async def on_rate_limited(self, conn: WebSocketConnection) -> bool:
        """Called when a connection exceeds its message rate; True drops the message.

        The policy is the upgrader's ``rate_limit_policy``: close with 1008 or 4429, or drop the
        message and warn the client (see docs/protection.md)."""
        self.stats.rate_limited()
        guard = conn.guard
        if guard is None:
            await conn.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
            return True
        return await guard.rate_limited()

    async def on_channel_message(self, conn: WebSocketConnection, message: dict[str, Any]) -> None:
        """A channel-layer message of a type rockstar_ws does not know; logged and ignored."""
        logger.warning("unknown channel-layer message type %r for %s", message.get("type"), conn)

    async def run_sync_handler(self, handler: Handler, ctx: Context, conn: Any) -> Any:
        """Run a plain ``def`` handler in the sync-handler thread pool."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=ws_settings.SYNC_HANDLER_THREADS,
                                                thread_name_prefix="rockstar-ws-sync")

        def run() -> Any:
            close_old_connections()
            try:
                return handler(ctx, conn)
            finally:
                close_old_connections()
        return await sync_to_async(run, thread_sensitive=False, executor=self._executor)()

    # -- ASGI --------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI application: the twin of the reference's ``HandleUpgrade``."""
        await RockstarConsumer(self)(scope, receive, send)

    handle_upgrade = __call__

    async def serve(self, scope: dict[str, Any], receive: Any, send: Any, *, path: str | None = None) -> None:
        """Serve one connection routed on ``path`` (None: the scope's path without its
        ``root_path``): what each ``urlpatterns`` entry calls."""
        await RockstarConsumer(self, path=path)(scope, receive, send)

    def __repr__(self) -> str:
        return f"<WebSocketServer {self.name!r} routes={len(self.routes)} connections={self.get_connections()}>"


def _bind(mw: Middleware, nxt: Callable[[Context], Awaitable[Any]]) -> Callable[[Context], Awaitable[Any]]:
    async def call(ctx: Context) -> Any:
        return await mw(ctx, nxt)
    return call


#: The server that ``ws_routes.py`` modules and ``ROCKSTAR_WS["ROUTES"]`` register on.
default_server = WebSocketServer(use_settings=True)



def _warn_unless_installed() -> None:
    """Without "rockstar_ws" in INSTALLED_APPS nothing loads ws_routes.py or the settings routes,
    so every handshake would be a silent 404: say so where the server is imported (asgi.py)."""
    from django.apps import apps

    if apps.ready and not apps.is_installed("rockstar_ws"):
        import warnings

        text = ('"rockstar_ws" is not in INSTALLED_APPS: no ws_routes.py module and no ROCKSTAR_WS["ROUTES"] '
                'are loaded, and every WebSocket handshake is refused with 404. '
                'Add "rockstar_ws" to INSTALLED_APPS (after "daphne").')
        warnings.warn(text, RuntimeWarning, stacklevel=3)


_warn_unless_installed()
