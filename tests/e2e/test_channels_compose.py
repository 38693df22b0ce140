"""rockstar_ws composed with Channels, through real daphne and uvicorn processes (docs/channels.md).

The server processes serve ``tests.compose_project.asgi``: a project with its own
``AsyncWebsocketConsumer`` in a ``URLRouter`` under ``AuthMiddlewareStack``, which added
rockstar_ws routes in a few lines (``application``), or put rockstar_ws in front of its router
(``fallback_application``). The probe view (``/compose-probe/``) reports what the consumers of
the process did and the connections rockstar_ws counts.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest

from tests.client import connect, recv_json
from tests.e2e.test_ops_live import session_cookie, wait_live
from tests.e2e.test_tenants import closed_with, copy_env, manage, status_of, wait_status
from tests.servers import ServerProcess
from tests.tenantapp.auth import make_token
from tests.waiting import poll

APP = "tests.compose_project.asgi:application"
GUARDED_APP = "tests.compose_project.asgi:guarded_application"
FALLBACK_APP = "tests.compose_project.asgi:fallback_application"
SETTINGS = "tests.compose_project.settings"
KINDS = ["daphne", "uvicorn"]


def compose_env(server_env: dict[str, str], tmp, **extra: str) -> dict[str, str]:
    return {**copy_env(server_env, tmp, **extra), "DJANGO_SETTINGS_MODULE": SETTINGS}


def _get(server: ServerProcess, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(server.http_url + path, timeout=10) as response:
        return json.loads(response.read())


async def probe(server: ServerProcess) -> dict[str, Any]:
    return await asyncio.to_thread(_get, server, "/compose-probe/")


async def connects(server: ServerProcess, path: str) -> int:
    return sum(1 for e in (await probe(server))["events"] if e == f"connect:{path}")


async def wait_probe(server: ServerProcess, until, timeout: float = 20) -> dict[str, Any]:
    return await poll(lambda: probe(server), until, timeout, 0.1)


@pytest.fixture(scope="module", params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def env(kind, server_env, tmp_path_factory) -> dict[str, str]:
    return compose_env(server_env, tmp_path_factory.mktemp("compose-db"))


@pytest.fixture(scope="module")
def srv(kind, env, tmp_path_factory):
    server = ServerProcess(kind, app=APP, env=env, log_dir=tmp_path_factory.mktemp(f"compose-{kind}")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(kind, env, tmp_path_factory):
    server = ServerProcess(kind, app=FALLBACK_APP, env=env,
                           log_dir=tmp_path_factory.mktemp(f"compose-front-{kind}")).start()
    yield server
    server.stop()


def token(scopes: list[str], user_id: int = 1, tenant: str | None = None) -> str:
    return make_token(user_id, tenant, scopes)


# -- the old consumer and rockstar_ws side by side ----------------------------------------------
async def test_the_old_consumer_keeps_working_untouched(srv, env):
    cookie = session_cookie(env, "bob")
    async with connect(srv, "/ws/legacy/r1", additional_headers={"Cookie": cookie}) as ws:
        hello = await recv_json(ws)
        assert hello["room"] == "r1" and hello["kwargs"] == {"room": "r1"}
        assert hello["rockstar"] is None  # not behind rockstar_ws
        assert (hello["user"], hello["authenticated"]) == ("bob", True)  # AuthMiddlewareStack's session user
        await ws.send("hi")
        assert await ws.recv() == "echo:hi"
    async with connect(srv, "/ws/native") as ws:
        await ws.send("x")
        assert await ws.recv() == "native:x"
    # rockstar_ws counts its own connections only: the old consumer's never were
    assert (await wait_probe(srv, lambda d: d["connections"] == 0))["connections"] == 0


async def test_a_consumer_behind_a_public_route_gets_what_rockstar_ws_learned(srv, env):
    cookie = session_cookie(env, "bob")
    async with connect(srv, "/ws/open/r2", additional_headers={"Cookie": cookie}) as ws:
        hello = await recv_json(ws)
        assert hello["kwargs"] == {"room": "r2"}
        rockstar = hello["rockstar"]
        assert rockstar["route"] == "/ws/open/<str:room>" and rockstar["path_params"] == {"room": "r2"}
        assert rockstar["user_id"] is None and rockstar["authenticated"] is False
        assert (hello["user"], hello["authenticated"]) == ("bob", True)  # no token: the session user stays
        data = await wait_probe(srv, lambda d: d["asgi_connections"] == ["/ws/open/<str:room>"])
        assert data["asgi_connections"] == ["/ws/open/<str:room>"]
        await ws.send("again")
        assert await ws.recv() == "echo:again"
    data = await wait_probe(srv, lambda d: d["connections"] == 0 and "disconnect:/ws/open/r2:1000" in d["events"])
    assert data["connections"] == 0
    assert "disconnect:/ws/open/r2:1000" in data["events"]


async def test_the_consumer_accepts_with_its_own_subprotocol(srv):
    async with connect(srv, "/ws/open/proto", subprotocols=["legacy.v1"]) as ws:
        assert ws.subprotocol == "legacy.v1"
        assert (await recv_json(ws))["room"] == "proto"


async def test_a_consumer_that_raises_is_a_500_before_the_accept_and_a_1011_after(srv):
    assert await status_of(srv, "/ws/open/boom") == 500
    async with connect(srv, "/ws/open/crashing") as ws:
        await recv_json(ws)
        await ws.send("crash")
        assert await closed_with(ws) == (1011, "internal error")
    await wait_probe(srv, lambda d: d["connections"] == 0)
    out = srv.output()
    assert "application of /ws/open/<str:room> raised before accepting" in out
    assert "handler of /ws/open/<str:room> raised" in out and "receive failed" in out


async def test_a_sync_consumer_on_a_host_route(srv):
    async with connect(srv, "/ws/sync/s1", host="tenant2.localhost") as ws:
        await ws.send("a")
        assert await ws.recv() == "sync:s1:a"
        await ws.send(b"\x00" * 2048)  # over the route's message size limit: closed by rockstar_ws
        assert await closed_with(ws) == (1009, "message too big")
    assert await status_of(srv, "/ws/sync/s1", host="tenant1.localhost") == 404  # another host: no route


async def test_a_consumer_that_closes_in_connect_refuses_the_handshake_uncounted(srv):
    before = await connects(srv, "/ws/open/closed")
    assert await status_of(srv, "/ws/open/closed") == 403
    assert await connects(srv, "/ws/open/closed") == before + 1  # its connect() ran and refused
    assert (await wait_probe(srv, lambda d: d["connections"] == 0))["connections"] == 0


async def test_authenticated_consumer_route_refusals_never_reach_connect(srv, env):
    path = "/ws/secure/vault"
    assert await status_of(srv, path) == 401  # no token
    assert await status_of(srv, f"{path}?token={token(['chat:read'])}") == 403  # wrong scope
    assert await status_of(srv, f"/ws/secure/banned?token={token(['legacy:use'])}") == 403  # middleware
    probe_data = await probe(srv)
    assert not [e for e in probe_data["events"] if e.startswith("connect:/ws/secure/")]
    assert "middleware:/ws/secure/banned" not in probe_data["events"]

    cookie = session_cookie(env, "bob")
    async with connect(srv, f"{path}?token={token(['legacy:use'])}", additional_headers={"Cookie": cookie}) as ws:
        hello = await recv_json(ws)
        rockstar = hello["rockstar"]
        assert rockstar["user_id"] == "1" and "legacy:use" in rockstar["scopes"]
        assert rockstar["authenticated"] is True and str(rockstar["claims"]["user_id"]) == "1"
        assert (hello["user"], hello["authenticated"]) == ("alice", True)  # the token's user wins over the session
        data = await wait_probe(srv, lambda d: d["asgi_connections"] == ["/ws/secure/<str:room>"])
        assert data["asgi_connections"] == ["/ws/secure/<str:room>"]
        assert f"middleware:{path}" in data["events"]
        staff = session_cookie(env, "admin")  # the admin's live page counts it like any connection
        live = await wait_live(srv, staff, lambda d: d["by_route"].get("/ws/secure/<str:room>") == 1)
        assert live["by_route"].get("/ws/secure/<str:room>") == 1
    assert (await wait_probe(srv, lambda d: d["connections"] == 0))["connections"] == 0
    live = await wait_live(srv, staff, lambda d: not d["by_route"].get("/ws/secure/<str:room>"))
    assert not live["by_route"].get("/ws/secure/<str:room>")


async def test_disconnect_user_closes_the_consumers_connections(srv):
    async with connect(srv, f"/ws/secure/u2?token={token(['legacy:use'], user_id=2)}") as mine, \
            connect(srv, f"/ws/secure/u1?token={token(['legacy:use'], user_id=1)}") as other:
        assert (await recv_json(mine))["rockstar"]["user_id"] == "2"
        await recv_json(other)
        await wait_probe(srv, lambda d: d["connections"] == 2)
        result = await asyncio.to_thread(_get, srv, "/compose-probe/?disconnect_user=2")
        assert result["closed"] == 1
        assert await closed_with(mine) == (4403, "revoked")
        await other.send("still")
        assert await other.recv() == "echo:still"
    data = await wait_probe(srv, lambda d: "disconnect:/ws/secure/u2:4403" in d["events"])
    assert "disconnect:/ws/secure/u2:4403" in data["events"]


# -- Channels' own wrappers, inside and outside rockstar_ws ------------------------------------------
async def test_channels_wrappers_inside_rockstar_ws_run_after_its_checks(srv, env):
    origin = f"http://127.0.0.1:{srv.port}"
    cookie = session_cookie(env, "bob")
    # AuthMiddlewareStack inside an authenticated route: the token's user stays the scope's user
    assert await status_of(srv, "/ws/inside/auth", additional_headers={"Cookie": cookie}) == 401
    async with connect(srv, f"/ws/inside/auth?token={token(['legacy:use'])}",
                       additional_headers={"Cookie": cookie}) as ws:
        hello = await recv_json(ws)
        assert (hello["user"], hello["session"]) == ("alice", True)
    # AllowedHostsOriginValidator inside: its refusal (a close before the accept) is a 403
    assert await status_of(srv, "/ws/inside/origin", origin="http://evil.example") == 403
    async with connect(srv, "/ws/inside/origin", origin=origin) as ws:
        assert (await recv_json(ws))["rockstar"]["route"] == "/ws/inside/origin"
    # SessionMiddlewareStack inside: the session, and the user an outer AuthMiddlewareStack set
    async with connect(srv, "/ws/inside/session", additional_headers={"Cookie": cookie}) as ws:
        hello = await recv_json(ws)
        assert (hello["user"], hello["session"]) == ("bob", True)


async def test_channels_wrappers_outside_rockstar_ws_run_first(kind, env, server_factory):
    server = server_factory(kind, app=GUARDED_APP, env=env)
    origin = f"http://127.0.0.1:{server.port}"
    before = await connects(server, "/ws/open/o1")
    # the outer origin validator refuses before rockstar_ws sees the handshake
    assert await status_of(server, "/ws/open/o1", origin="http://evil.example") == 403
    assert await status_of(server, "/ws/secure/o1", origin="http://evil.example") == 403
    assert await connects(server, "/ws/open/o1") == before
    # past it, rockstar_ws's own refusals (401 without a token) and the consumer with a session
    assert await status_of(server, "/ws/secure/o1", origin=origin) == 401
    async with connect(server, "/ws/open/o1", origin=origin) as ws:
        hello = await recv_json(ws)
        assert hello["session"] is True and hello["user"] == "AnonymousUser"  # no AuthMiddlewareStack: no user
        assert hello["rockstar"]["route"] == "/ws/open/<str:room>"
    async with connect(server, "/ws/legacy/o2", origin=origin) as ws:
        assert (await recv_json(ws))["session"] is True


# -- rockstar_ws in front of the project's router --------------------------------------------------
async def test_unknown_paths_reach_the_fallback_router_and_refusals_stay_rockstar_ws(front):
    async with connect(front, "/ws/legacy/behind") as ws:
        hello = await recv_json(ws)
        assert hello["room"] == "behind" and hello["rockstar"] is None
        await ws.send("z")
        assert await ws.recv() == "echo:z"
    async with connect(front, "/ws/front/room9") as ws:
        assert (await recv_json(ws))["rockstar"]["route"] == "/ws/front/<str:room>"
    assert await status_of(front, "/ws/front/secure") == 401
    assert await status_of(front, f"/ws/front/secure?token={token(['chat:read'])}") == 403
    # the host check runs before the fallback: a host outside ALLOWED_HOSTS never reaches the router
    assert await status_of(front, "/ws/legacy/evil", host="evil.example") == 400
    events = (await probe(front))["events"]
    assert "connect:/ws/front/secure" not in events and "connect:/ws/legacy/evil" not in events


# -- tenant deactivation closes a consumer's connection ----------------------------------------------
async def test_deactivating_the_tenant_closes_the_consumer_with_4403(kind, server_env, tmp_path, server_factory):
    env = compose_env(server_env, tmp_path, ROCKSTAR_TEST_TENANT_SWEEP="0.5", ROCKSTAR_TEST_TENANT_TTL="0.5")
    server = server_factory(kind, app=APP, env=env)
    path = f"/ws/secure/t1?token={token(['legacy:use'], tenant='tenant1')}"
    async with connect(server, path, host="tenant1.localhost") as ws:
        hello = await recv_json(ws)
        assert hello["rockstar"]["tenant_id"] == "tenant1"
        await wait_probe(server, lambda d: d["connections"] == 1)
        await asyncio.to_thread(manage, env, "ws_tenant", "deactivate", "tenant1")
        assert await closed_with(ws) == (4403, "tenant inactive")
    data = await wait_probe(server, lambda d: "disconnect:/ws/secure/t1:4403" in d["events"] and d["connections"] == 0)
    assert "disconnect:/ws/secure/t1:4403" in data["events"] and data["connections"] == 0
    assert await wait_status(server, path, "tenant1.localhost", 403) == 403
    assert "Traceback" not in server.output()


# -- a project mounted under a prefix ----------------------------------------------------------------
async def test_root_path_is_left_out_of_the_routed_path(kind, env, server_factory):
    """``--root-path /mount``: uvicorn puts the prefix into ``scope["path"]``, daphne leaves it out;
    both route on the path without it, as Channels' ``URLRouter`` does. (``URLRouter`` itself
    refuses every path on daphne with a root path, which it expects inside ``path``: the
    ``urlpatterns`` case runs on uvicorn only; docs/channels.md.)"""
    cases = [(FALLBACK_APP, "/ws/front/r1")] + ([(APP, "/ws/open/r1")] if kind == "uvicorn" else [])
    for app, path in cases:
        server = server_factory(kind, app=app, env=env, args=["--root-path", "/mount"])
        async with connect(server, path) as ws:
            hello = await recv_json(ws)
            assert hello["room"] == "r1" and hello["rockstar"]["path_params"] == {"room": "r1"}


def test_the_setup_check_finds_rockstar_ws_inside_the_url_router(env):
    """``manage.py check`` follows ``URLRouter`` to the urlpatterns entries: no W303 for a project
    whose rockstar_ws routes sit in its router; a router without them still warns."""
    import subprocess
    import sys

    from tests.servers import ROOT

    def check(app: str) -> str:
        code = ("from django.core import checks; from django.test.utils import override_settings\n"
                f"with override_settings(ASGI_APPLICATION={app!r}):\n"
                "    print([m.id for m in checks.run_checks() if m.id and m.id.startswith('rockstar_ws.W30')])")
        done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "shell", "-c", code], cwd=ROOT,
                              env={**__import__("os").environ, **env}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert check("tests.compose_project.asgi.application") == "[]"
    assert check("tests.compose_project.asgi.fallback_application") == "[]"
    assert check("tests.compose_project.asgi.legacy_only_application") == "['rockstar_ws.W303']"
