"""A project that had Channels consumers in a URLRouter before it added rockstar_ws.

``application``: rockstar_ws's routes as URL routes beside the old ones (the old consumer is
untouched; the same class is also served behind rockstar_ws's checks). ``fallback_application``:
rockstar_ws in front, the project's router behind it for every path it has no route for.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.compose_project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402
from django.urls import path  # noqa: E402

from rockstar_ws import Deny, Upgrader, WebSocketServer  # noqa: E402
from rockstar_ws import default_server as ws  # noqa: E402
from tests.compose_project.consumers import EVENTS, LegacyConsumer, SyncLegacyConsumer  # noqa: E402

# -- the project as it was -------------------------------------------------------------------
legacy_routes = [path("ws/legacy/<str:room>", LegacyConsumer.as_asgi())]


#: The project's router alone (the set-up check warns that it reaches no rockstar_ws route).
legacy_only_application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AuthMiddlewareStack(URLRouter(legacy_routes)),
})


# -- what adding rockstar_ws took ------------------------------------------------------------
async def no_banned_rooms(ctx, next):
    """Middleware: runs before the consumer; a refusal here never reaches its connect()."""
    if ctx.request.path_params.get("room") == "banned":
        raise Deny(403, "room banned")
    EVENTS.append(f"middleware:{ctx.request.path}")
    await next(ctx)


ws.register_authenticated_route("/ws/secure/<str:room>", LegacyConsumer.as_asgi(), [no_banned_rooms],
                                allowed_scopes=["legacy:use"])
ws.register_route("/ws/open/<str:room>", LegacyConsumer.as_asgi(), [no_banned_rooms])
ws.register_host_route("tenant2.localhost", "/ws/sync/<str:room>", SyncLegacyConsumer.as_asgi(),
                       upgrader=Upgrader(max_message_size=1024))


# Channels' wrappers inside rockstar_ws: they run after its checks, around the consumer.
ws.register_authenticated_route("/ws/inside/auth", AuthMiddlewareStack(LegacyConsumer.as_asgi()),
                                allowed_scopes=["legacy:use"])
ws.register_route("/ws/inside/origin", AllowedHostsOriginValidator(LegacyConsumer.as_asgi()))
ws.register_route("/ws/inside/session", SessionMiddlewareStack(LegacyConsumer.as_asgi()))


@ws.route("/ws/native")
async def native(ctx, conn):
    async for _kind, data in conn:
        await conn.write_message(1, f"native:{data}")


application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AuthMiddlewareStack(URLRouter([*ws.urlpatterns, *legacy_routes])),
})

# Channels' wrappers outside: the origin check and the session before rockstar_ws's routes.
guarded_application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AllowedHostsOriginValidator(SessionMiddlewareStack(URLRouter([*ws.urlpatterns, *legacy_routes]))),
})

# -- rockstar_ws in front, the project's router behind ------------------------------------------
front = WebSocketServer(name="front", fallback=URLRouter(legacy_routes))
front.register_authenticated_route("/ws/front/secure", LegacyConsumer.as_asgi(), allowed_scopes=["legacy:use"])
front.register_route("/ws/front/<str:room>", LegacyConsumer.as_asgi())

fallback_application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AuthMiddlewareStack(front),
})
