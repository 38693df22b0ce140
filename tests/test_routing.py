"""The route table and registration rules (unit tests)."""

from __future__ import annotations

import pytest

from rockstar_ws import RouteConflict, WebSocketServer
from rockstar_ws.errors import ImproperlyConfigured
from rockstar_ws.routing import normalize_host


async def handler(ctx, conn):
    pass


def sync_handler(ctx, conn):
    pass


@pytest.mark.parametrize(("raw", "expected"), [
    ("Example.COM", "example.com"),
    ("example.com:8080", "example.com"),
    ("example.com.", "example.com"),
    ("[::1]:8000", "[::1]"),
    ("", ""),
    (None, ""),
])
def test_normalize_host(raw, expected):
    assert normalize_host(raw) == expected


def test_host_routes_win_then_wildcards_then_global():
    s = WebSocketServer()
    g = s.register_route("/ws/x", handler)
    h = s.register_host_route("a.example.com", "/ws/x", handler)
    w = s.register_host_route("*.example.com", "/ws/x", handler)
    deep = s.register_host_route("*.b.example.com", "/ws/x", handler)
    assert s.routes.find("a.example.com", "/ws/x")[0] is h
    assert s.routes.find("c.example.com", "/ws/x")[0] is w
    assert s.routes.find("z.b.example.com", "/ws/x")[0] is deep
    assert s.routes.find("example.com", "/ws/x")[0] is g
    assert s.routes.find("other.org", "/ws/x")[0] is g
    assert s.routes.find("a.example.com", "/ws/y") is None


def test_path_parameters_use_django_converters():
    s = WebSocketServer()
    r = s.register_route("/ws/rooms/<str:room>/<int:n>", handler)
    found = s.routes.find("", "/ws/rooms/lobby/3")
    assert found == (r, {"room": "lobby", "n": 3})
    assert s.routes.find("", "/ws/rooms/lobby/x") is None


def test_registering_twice_is_an_error():
    s = WebSocketServer()
    s.register_route("/ws/x", handler)
    with pytest.raises(RouteConflict):
        s.register_route("/ws/x", handler)
    s.register_host_route("A.example.com:80", "/ws/x", handler)
    with pytest.raises(RouteConflict):
        s.register_host_route("a.example.com", "/ws/x", handler)
    s.register_route("/ws/p/<int:i>", handler)
    with pytest.raises(RouteConflict):
        s.register_route("/ws/p/<int:i>", handler)


def test_bad_registrations_name_the_fix():
    s = WebSocketServer()
    with pytest.raises(ImproperlyConfigured, match="must start with '/'"):
        s.register_route("ws/x", handler)
    with pytest.raises(ImproperlyConfigured, match="not callable"):
        s.register_route("/ws/x", "nope")
    with pytest.raises(ImproperlyConfigured, match="leading"):
        s.register_host_route("a.*.com", "/ws/x", handler)

    def sync_mw(ctx, next):
        return next(ctx)
    with pytest.raises(ImproperlyConfigured, match="coroutine function"):
        s.register_route("/ws/y", handler, [sync_mw])
    with pytest.raises(ImproperlyConfigured, match="list of strings"):
        s.register_authenticated_route("/ws/z", handler, allowed_scopes="chat:read")


def test_sync_and_async_handlers_are_told_apart():
    s = WebSocketServer()
    assert s.register_route("/a", handler).is_async
    assert not s.register_route("/b", sync_handler).is_async

    class Callable:
        async def __call__(self, ctx, conn):
            pass
    assert s.register_route("/c", Callable()).is_async


def test_decorator_form_and_authenticated_flags():
    s = WebSocketServer()

    @s.route("/ws/d", allowed_scopes=["a", "b"], require_all_scopes=True)
    async def d(ctx, conn):
        pass
    r = s.routes.find("", "/ws/d")[0]
    assert r.handler is d and r.authenticated and r.allowed_scopes == ("a", "b") and r.require_all_scopes
    r2 = s.register_authenticated_host_route("h.example.com", "/ws/d", handler, None, ["admin:access"])
    assert r2.authenticated and r2.host == "h.example.com"
