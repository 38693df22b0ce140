"""The route table and registration rules (unit tests)."""

from __future__ import annotations

import pytest

from rockstar_ws import RouteConflict, WebSocketServer
from rockstar_ws.core.errors import ImproperlyConfigured
from rockstar_ws.core.routing import normalize_host


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


# -- mistakes named at registration ------------------------------------------------------------
def test_a_handler_taking_one_argument_is_refused_at_registration_with_the_fix():
    async def h(conn):
        pass

    s = WebSocketServer()
    with pytest.raises(TypeError, match=r"Handler .*h\(conn\) of '/ws/x' must take two arguments \(ctx, conn\); "
                                        r"write 'async def h\(ctx, conn\):'"):
        s.register_route("/ws/x", h)
    with pytest.raises(ImproperlyConfigured):  # also an ImproperlyConfigured, like every set-up mistake
        s.route("/ws/x")(h)
    assert len(s.routes) == 0


def test_a_sync_handler_and_middleware_with_the_wrong_arity_are_refused():
    def h(ctx):
        pass

    async def mw(ctx):
        pass

    s = WebSocketServer()
    with pytest.raises(TypeError, match=r"write 'def h\(ctx, conn\):'"):
        s.register_route("/ws/x", h)
    with pytest.raises(TypeError, match=r"Middleware .*mw\(ctx\) of '/ws/y' .*write 'async def mw\(ctx, next\):'"):
        s.register_route("/ws/y", handler, [mw])


def test_handlers_of_every_accepted_shape_register():
    import functools

    class Callable:
        async def __call__(self, ctx, conn):
            pass

    class Consumer:
        async def handle(self, ctx, conn):
            pass

    async def with_defaults(ctx, conn, extra=None):
        pass

    async def variadic(*args):
        pass

    async def partial_target(prefix, ctx, conn):
        pass

    s = WebSocketServer()
    for i, h in enumerate((handler, sync_handler, Callable(), Consumer().handle, with_defaults, variadic,
                           functools.partial(partial_target, "p"))):
        s.register_route(f"/ws/{i}", h)
    assert len(s.routes) == 7


def test_route_conflict_names_both_registration_sites():
    s = WebSocketServer()
    first_line = _line() + 1
    s.register_route("/ws/x", handler)
    with pytest.raises(RouteConflict) as err:
        second_line = _line() + 1
        s.register_route("/ws/x", sync_handler)
    text = str(err.value)
    here = "tests/unit/test_routing.py"
    assert f"{here}:{first_line}" in text and f"{here}:{second_line}" in text, text
    assert "tests.unit.test_routing.handler" in text and "tests.unit.test_routing.sync_handler" in text
    s.register_host_route("a.example.com", "/ws/r/<int:n>", handler)
    with pytest.raises(RouteConflict, match=r"on host 'a.example.com' '/ws/r/<int:n>' is registered twice: first at "
                                            r"tests/unit/test_routing.py:\d+"):
        s.register_host_route("A.example.com", "/ws/r/<int:n>", handler)


def test_route_conflict_between_settings_routes_names_the_settings_entries():
    from rockstar_ws.engine.loading import load_settings_routes

    s = WebSocketServer()
    spec = {"path": "/ws/x", "handler": "tests.unit.test_routing.handler"}
    with pytest.raises(RouteConflict, match=r"first at settings.ROCKSTAR_WS\['ROUTES'\]\[0\] .*again at "
                                            r"settings.ROCKSTAR_WS\['ROUTES'\]\[1\]"):
        load_settings_routes(s, [spec, spec])


def _line() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_a_route_refusal_mode_must_be_http_or_close():
    s = WebSocketServer()
    s.register_route("/ws/ok", handler, refusal_mode="close")
    with pytest.raises(ImproperlyConfigured, match=r"refusal_mode of '/ws/x' is 'closed'; use 'http' or 'close'"):
        s.register_route("/ws/x", handler, refusal_mode="closed")
