"""Unit tests of the protection pieces: token buckets, the layered upgrader, system checks."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from rockstar_ws import Deny, Upgrader, WebSocketServer
from rockstar_ws.checks import check_protection
from rockstar_ws.core.context import Context, Headers, Request
from rockstar_ws.core.routing import Route
from rockstar_ws.limits.ratelimit import HandshakeRateLimiter, TokenBucket
from rockstar_ws.limits.upgrader import default_check_origin, effective_upgrader, settings_upgrader


async def _handler(ctx, conn):
    pass


def ctx_for(origin: str | None, host: str = "app.example.com", route: Route | None = None,
            ip: str = "10.0.0.1") -> Context:
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin is not None else [])
    req = Request(path="/ws", host=host, remote_addr=f"{ip}:5000", local_addr="127.0.0.1:80", headers=Headers(headers))
    return Context(req, {"type": "websocket"}, WebSocketServer(), route or Route(path="/ws", handler=_handler))


# -- token bucket ---------------------------------------------------------------------------
def test_bucket_allows_the_burst_then_the_rate():
    b = TokenBucket(rate=10, burst=5, now=0.0)
    assert [b.allow(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not b.allow(0.05)  # half a token
    assert b.allow(0.1)  # one token after 0.1 s at 10/s
    assert not b.allow(0.1)


def test_bucket_never_holds_more_than_its_burst():
    b = TokenBucket(rate=100, burst=3, now=0.0)
    assert [b.allow(1000.0) for _ in range(4)] == [True, True, True, False]
    assert b.retry_after() == pytest.approx(0.01, abs=1e-3)


def test_bucket_rejects_a_zero_rate():
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_handshake_limiter_is_per_ip_and_exempts():
    lim = HandshakeRateLimiter(rate=1, burst=2, exempt=["127.0.0.1"])
    lim.check("1.1.1.1")
    lim.check("1.1.1.1")
    with pytest.raises(Deny) as exc:
        lim.check("1.1.1.1")
    assert exc.value.status == 429 and "1.1.1.1" in exc.value.log_detail
    lim.check("2.2.2.2")  # another IP has its own bucket
    for _ in range(100):
        lim.check("127.0.0.1")  # exempt


def test_handshake_limiter_forgets_refilled_ips():
    lim = HandshakeRateLimiter(rate=1000, burst=1)
    for i in range(50):
        lim.check(f"10.0.0.{i}")
    assert len(lim.buckets) == 50
    lim.prune(now=10**9)
    assert lim.buckets == {}


# -- the layered upgrader -------------------------------------------------------------------
def test_settings_give_every_default():
    u = settings_upgrader()
    assert (u.max_message_size, u.message_rate, u.message_burst, u.rate_limit_policy) == (1048576, 100.0, 200, "close")
    assert (u.idle_timeout, u.write_timeout, u.write_buffer_limit) == (0.0, 10.0, 1048576)
    assert u.allow_missing_origin is True


def test_route_overrides_only_what_it_sets():
    server = WebSocketServer()
    server.set_upgrader(message_rate=7)
    route = Route(path="/ws", handler=_handler, options={"upgrader": Upgrader(max_message_size=16)})
    u = effective_upgrader(route, server.upgrader)
    assert (u.max_message_size, u.message_rate, u.message_burst) == (16, 7, 200)
    assert server.max_message_size == 1048576


def test_settings_changes_reach_the_upgrader():
    with override_settings(ROCKSTAR_WS={"MAX_MESSAGE_SIZE": 99, "RATE_LIMIT_POLICY": "drop"}):
        u = effective_upgrader(None, Upgrader())
        assert (u.max_message_size, u.rate_limit_policy) == (99, "drop")
    assert settings_upgrader().max_message_size == 1048576


def test_bad_upgrader_values_are_errors():
    with pytest.raises(ImproperlyConfigured, match="rate_limit_policy"):
        Upgrader(rate_limit_policy="ban")
    with pytest.raises(ImproperlyConfigured, match="max_message_size"):
        Upgrader(max_message_size=-1)
    route = Route(path="/ws", handler=_handler, options={"upgrader": 5})
    with pytest.raises(ImproperlyConfigured, match="must be an Upgrader"):
        effective_upgrader(route, Upgrader())
    route = Route(path="/ws", handler=_handler, options={"upgrader": {"max_mesage_size": 1}})
    with pytest.raises(ImproperlyConfigured, match="max_mesage_size"):
        effective_upgrader(route, Upgrader())


def test_settings_routes_take_an_upgrader_dict():
    from rockstar_ws.engine.loading import load_settings_routes

    server = WebSocketServer()
    load_settings_routes(server, [{"path": "/ws/s", "handler": "demo_project.demo.ws_routes.echo",
                                   "options": {"upgrader": {"max_message_size": 64, "message_rate": 2}}}])
    u = effective_upgrader(server.routes.find("", "/ws/s")[0], server.upgrader)
    assert (u.max_message_size, u.message_rate, u.message_burst) == (64, 2, 200)


@pytest.mark.parametrize(("origin", "ok"), [
    (None, True),
    ("https://app.example.com", True),  # same host
    ("http://localhost:3000", True),  # ALLOWED_HOSTS of the test settings: .localhost
    ("https://evil.example", False),
    ("null", False),
    ("file://", False),
    ("https://app.example.com.evil.example", False),
])
def test_default_origin_check(origin, ok):
    assert default_check_origin(ctx_for(origin)) is ok


def test_allowed_origins_setting_and_full_origins():
    with override_settings(ROCKSTAR_WS={"ALLOWED_ORIGINS": ["https://partner.example", ".trusted.example"]}):
        assert default_check_origin(ctx_for("https://partner.example"))
        assert not default_check_origin(ctx_for("http://partner.example"))  # scheme matters for full origins
        assert default_check_origin(ctx_for("https://a.trusted.example"))
        assert not default_check_origin(ctx_for("http://localhost"))  # replaces ALLOWED_HOSTS


def test_refusal_says_why():
    ctx = ctx_for("https://evil.example")
    with pytest.raises(Deny) as exc:
        effective_upgrader(None, Upgrader()).check(ctx)
    assert exc.value.status == 403
    assert exc.value.log_detail == ("Origin 'https://evil.example' is neither the Host 'app.example.com' "
                                    "nor in ALLOWED_HOSTS")
    with pytest.raises(Deny) as exc:
        effective_upgrader(None, Upgrader(allow_missing_origin=False)).check(ctx_for(None))
    assert "no Origin header" in exc.value.log_detail
    with pytest.raises(Deny) as exc:
        Upgrader(check_origin=lambda c: False).check(ctx_for("https://app.example.com"))
    assert "check_origin refused" in exc.value.log_detail


def test_server_precheck_applies_the_ip_rate_after_the_host_check():
    server = WebSocketServer()
    scope = {"type": "websocket", "headers": [(b"host", b"localhost")]}
    foreign = {"type": "websocket", "headers": [(b"host", b"evil.example")]}
    with override_settings(ROCKSTAR_WS={"HANDSHAKE_RATE": 1, "HANDSHAKE_BURST": 1, "HANDSHAKE_RATE_EXEMPT": []}):
        with pytest.raises(Deny) as exc:
            server.precheck(foreign, ctx_for(None, ip="9.9.9.9").request)
        assert exc.value.status == 400  # refused before the rate: the bucket is still full
        server.precheck(scope, ctx_for(None, ip="9.9.9.9").request)
        with pytest.raises(Deny) as exc:
            server.precheck(scope, ctx_for(None, ip="9.9.9.9").request)
        assert exc.value.status == 429


# -- system checks --------------------------------------------------------------------------
def ids(**overrides) -> list[str]:
    with override_settings(**overrides):
        return sorted(m.id for m in check_protection())


def test_defaults_pass_the_checks():
    assert ids(DEBUG=True) == []
    # in production the default ?token= source is worth a warning, and nothing else is
    assert ids(DEBUG=False) == ["rockstar_ws.W201"]


def test_every_origin_with_session_middleware_is_an_error():
    assert "rockstar_ws.E203" in ids(ROCKSTAR_WS={"ALLOWED_ORIGINS": ["*"]})
    assert "rockstar_ws.E203" in ids(ALLOWED_HOSTS=["*"])
    no_sessions = [m for m in __import__("django.conf").conf.settings.MIDDLEWARE if "session" not in m.lower()]
    assert "rockstar_ws.E203" not in ids(ALLOWED_HOSTS=["*"], MIDDLEWARE=no_sessions)


def test_query_tokens_in_production_warn():
    assert "rockstar_ws.W201" not in ids(DEBUG=False, ROCKSTAR_WS={"AUTH_QUERY_PARAM": None})
    assert "rockstar_ws.W201" in ids(DEBUG=False, ROCKSTAR_WS={"AUTH_QUERY_PARAM": "token"})
    assert "rockstar_ws.W201" in ids(DEBUG=False)  # the default accepts ?token=
    assert "rockstar_ws.W201" not in ids(DEBUG=True, ROCKSTAR_WS={"AUTH_QUERY_PARAM": "token"})


def test_every_origin_with_the_session_source_is_an_error():
    no_sessions = [m for m in __import__("django.conf").conf.settings.MIDDLEWARE if "session" not in m.lower()]
    assert "rockstar_ws.E203" in ids(ALLOWED_HOSTS=["*"], MIDDLEWARE=no_sessions,
                                     ROCKSTAR_WS={"AUTH_SESSION": True, "AUTH_SESSION_ORIGINS": ["*"]})


def test_limits_switched_off_warn_in_production():
    off = {"MAX_MESSAGE_SIZE": 0, "MESSAGE_RATE": 0, "HANDSHAKE_RATE": 0, "WRITE_TIMEOUT": 0, "WRITE_BUFFER_LIMIT": 0}
    assert "rockstar_ws.W202" in ids(DEBUG=False, ROCKSTAR_WS=off)
    assert "rockstar_ws.W202" not in ids(DEBUG=True, ROCKSTAR_WS=off)
    assert "rockstar_ws.I201" in ids(ROCKSTAR_WS={"MAX_MESSAGE_SIZE": 4 * 1048576})


def test_bad_values_are_errors():
    assert "rockstar_ws.E201" in ids(ROCKSTAR_WS={"MESSAGE_RATE": -1})
    assert "rockstar_ws.E201" in ids(ROCKSTAR_WS={"IDLE_TIMEOUT": "soon"})
    assert "rockstar_ws.E202" in ids(ROCKSTAR_WS={"RATE_LIMIT_POLICY": "ban"})
