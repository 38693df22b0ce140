"""Composition with Channels: which handlers are ASGI applications, ``urlpatterns``, and their errors."""

from __future__ import annotations

import pytest
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from channels.routing import URLRouter
from django.core.exceptions import ImproperlyConfigured

from rockstar_ws import AsgiApp, Deny, WebSocketServer
from rockstar_ws.core.errors import NoRoute
from rockstar_ws.core.routing import HandlerSignatureError, is_asgi_app
from rockstar_ws.engine.compose import RouteEntry, relative_path


class Legacy(AsyncWebsocketConsumer):
    pass


class SyncLegacy(WebsocketConsumer):
    pass


async def handler(ctx, conn):
    pass


async def handler_with_default(ctx, conn, extra=None):
    pass


async def asgi(scope, receive, send):
    pass


class AsgiObject:
    async def __call__(self, scope, receive, send):
        pass


async def ambiguous(a, b, c=None):
    pass


@pytest.mark.parametrize(("obj", "expected"), [
    (Legacy.as_asgi(), True),
    (SyncLegacy.as_asgi(), True),
    (AuthMiddlewareStack(Legacy.as_asgi()), True),
    (URLRouter([]), True),
    (asgi, True),
    (AsgiObject(), True),
    (AsgiApp(ambiguous), True),
    (handler, False),
    (handler_with_default, False),  # takes two: a handler, even though three would bind
    (ambiguous, False),
    (Legacy, False),  # the class itself is not an application
    ("not callable", False),
])
def test_asgi_application_detection(obj, expected):
    assert is_asgi_app(obj) is expected


def test_every_registration_accepts_an_asgi_application():
    s = WebSocketServer()
    routes = [
        s.register_route("/ws/a", Legacy.as_asgi()),
        s.register_host_route("a.example.com", "/ws/a", Legacy.as_asgi()),
        s.register_authenticated_route("/ws/b", Legacy.as_asgi(), allowed_scopes=["x"]),
        s.register_authenticated_host_route("a.example.com", "/ws/b", Legacy.as_asgi(), allowed_scopes=["x"]),
        s.register_route("/ws/c", asgi),
    ]
    assert all(r.asgi and r.is_async for r in routes)
    app = Legacy.as_asgi()
    assert s.route("/ws/d")(app) is app
    assert s.routes.find("", "/ws/d")[0].asgi
    assert not s.register_route("/ws/e", handler).asgi


def test_a_consumer_class_is_refused_with_the_fix():
    s = WebSocketServer()
    fix = r"Channels consumer class; register its application: Legacy.as_asgi\(\)"
    with pytest.raises(HandlerSignatureError, match=fix):
        s.register_route("/ws/a", Legacy)


def test_a_handler_of_the_wrong_shape_names_both_shapes():
    async def one(ctx):
        pass

    with pytest.raises(HandlerSignatureError, match=r"must take two arguments .*ASGI application"):
        WebSocketServer().register_route("/ws/a", one)


def test_asgi_app_wraps_only_callables():
    with pytest.raises(ImproperlyConfigured):
        AsgiApp("nope")  # type: ignore[arg-type]


def test_urlpatterns_one_entry_per_path_literal_first():
    s = WebSocketServer()
    s.register_route("/ws/rooms/<str:room>", handler)
    s.register_route("/ws/echo", handler)
    s.register_host_route("a.example.com", "/ws/echo", handler)
    s.register_route("/", handler)
    patterns = s.urlpatterns
    assert [str(p.pattern) for p in patterns] == ["ws/echo", "", "ws/rooms/<str:room>"]
    assert all(isinstance(p.callback, RouteEntry) and p.callback.server is s for p in patterns)
    router = URLRouter(patterns)
    # Channels matches them as it matches its own routes
    assert router.routes[2].pattern.match("ws/rooms/lobby")[2] == {"room": "lobby"}
    assert router.routes[0].pattern.match("ws/echo/") is None


def test_a_new_path_after_urlpatterns_were_read_raises_naming_where():
    s = WebSocketServer()
    s.register_route("/ws/a", handler)
    s.urlpatterns  # noqa: B018 - reading seals the paths
    s.register_host_route("b.example.com", "/ws/a", handler)  # a path in the list: reached through its entry
    late = r"'/ws/late'.*after server.urlpatterns was read at .*test_compose.py"
    with pytest.raises(ImproperlyConfigured, match=late):
        s.register_route("/ws/late", handler)
    with pytest.raises(ImproperlyConfigured, match=r"after server\.urlpatterns"):
        s.register_pubsub_route("/ws/late-pubsub")
    assert [str(p.pattern) for p in s.urlpatterns] == ["ws/a"]


def test_entry_path_under_an_outer_prefix():
    s = WebSocketServer()
    literal = RouteEntry(s, "/ws/echo")
    pattern = RouteEntry(s, "/ws/<path:rest>")
    assert literal.path_for({"path": "/api/ws/echo"}) == "/ws/echo"
    scope = {"path": "/api/ws/a/b", "url_route": {"args": (), "kwargs": {"rest": "a/b"}}}
    assert pattern.path_for(scope) == "/ws/a/b"  # not "/api/ws/a/b": the router's values decide
    assert pattern.path_for({"path": "/ws/x", "root_path": "/mount"}) == "/ws/x"
    assert pattern.path_for({"path": "/mount/ws/x", "root_path": "/mount"}) == "/ws/x"


@pytest.mark.parametrize(("scope", "expected"), [
    ({"path": "/ws/echo"}, "/ws/echo"),
    ({"path": "/app/ws/echo", "root_path": "/app"}, "/ws/echo"),
    ({"path": "/ws/echo", "root_path": "/app"}, "/ws/echo"),  # a server that left the prefix out of path
    ({"path": "/app", "root_path": "/app"}, "/"),
])
def test_relative_path(scope, expected):
    assert relative_path(scope) == expected


def test_no_route_is_the_404_refusal():
    deny = NoRoute(log_detail="x")
    assert isinstance(deny, Deny) and deny.status == 404 and deny.log_detail == "x"


def test_fallback_is_a_constructor_argument_and_an_attribute():
    router = URLRouter([])
    assert WebSocketServer(fallback=router).fallback is router
    s = WebSocketServer()
    assert s.fallback is None
    s.fallback = router
    assert s.fallback is router
