"""The live-connection registry, the connection limits, the admin JSON and the metrics, through
real daphne processes, real clients and (for cluster mode) the real Redis."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.client import InvalidStatus, connect
from tests.conftest import CI, probe
from tests.servers import ROOT, free_port
from tests.waiting import poll, wait_until_async

LIVE = "/ws/test/live"


# -- helpers ------------------------------------------------------------------------------
def session_cookie(server_env: dict[str, str], username: str) -> str:
    """A logged-in Django session of ``username`` in the servers' database, as a Cookie header."""
    code = (
        "from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY;"
        "from django.contrib.sessions.backends.db import SessionStore;"
        f"u = get_user_model().objects.get(username={username!r}); s = SessionStore();"
        "s[SESSION_KEY] = str(u.pk); s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend';"
        "s[HASH_SESSION_KEY] = u.get_session_auth_hash(); s.create(); print(s.session_key)"
    )
    out = subprocess.run([sys.executable, str(ROOT / "manage.py"), "shell", "-c", code], cwd=ROOT,
                         env={**_base_env(), **server_env}, check=True, capture_output=True, text=True)
    return f"sessionid={out.stdout.strip().splitlines()[-1]}"


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http_get(server, path: str, *, cookie: str | None = None, token: str | None = None) -> tuple[int, dict, bytes]:
    """GET without following redirects: status, headers, body."""
    request = urllib.request.Request(server.http_url + path)
    if cookie:
        request.add_header("Cookie", cookie)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def live(server, cookie: str) -> dict[str, Any]:
    status, _, body = await asyncio.to_thread(http_get, server, "/admin/rockstar_ws/live.json", cookie=cookie)
    assert status == 200, body
    return json.loads(body)


async def wait_live(server, cookie: str, check, timeout: float = 10.0) -> dict[str, Any]:
    """Poll the live JSON until ``check(data)`` holds (or the timeout passes); return the last data."""
    return await poll(lambda: live(server, cookie), check, timeout, 0.2)


async def staff_live_page(browser: Any, server) -> Any:
    """A new page of ``browser`` (Playwright, async) on the admin's live view, logged in as the
    test settings' staff user through the admin's login form."""
    page = await browser.new_page()
    await page.goto(f"{server.http_url}/admin/rockstar_ws/live/")
    await page.fill("#id_username", "admin")
    await page.fill("#id_password", "admin-password")
    await page.click("input[type=submit]")
    await page.wait_for_url("**/admin/rockstar_ws/live/")
    return page


async def refused(server, path: str = LIVE, **kwargs: Any) -> tuple[int, str]:
    """Open a handshake that must be refused: the HTTP status and reason phrase the client saw."""
    try:
        async with connect(server, path, **kwargs):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.reason_phrase
    raise AssertionError(f"handshake to {path} was accepted, expected a refusal")


async def open_clients(stack: AsyncExitStack, server, n: int, path: str = LIVE, **kwargs: Any) -> list[Any]:
    clients = []
    for _ in range(n):
        ws = await stack.enter_async_context(connect(server, path, **kwargs))
        await ws.send("hi")
        assert await ws.recv() == "hi"
        clients.append(ws)
    return clients


async def admitted_again(stack: AsyncExitStack, server, path: str = LIVE, **kwargs: Any) -> Any:
    """Open one client once a closed connection's slot is free again: the release runs after the
    close, asynchronously, so a handshake right after it may still meet the limit (429)."""
    async def attempt() -> Any:
        try:
            if path == LIVE:  # an echo: prove it answers
                return (await open_clients(stack, server, 1, path, **kwargs))[0]
            return await stack.enter_async_context(connect(server, path, **kwargs))
        except InvalidStatus as exc:
            if exc.response.status_code != 429:
                raise
            return None
    return await wait_until_async(attempt, timeout=30, interval=0.1)


async def handler_runs(server) -> int:
    return sum(1 for e in await probe(server, "events") if e.startswith("live-handler:"))


def live_only(data: dict[str, Any]) -> int:
    """Connections of the test route (the probe's own connection is not one of them)."""
    return data["by_route"].get(LIVE, 0)


@pytest.fixture(scope="module")
def staff(server_env) -> str:
    return session_cookie(server_env, "admin")


@pytest.fixture(scope="module")
def alice(server_env) -> str:
    return session_cookie(server_env, "alice")


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test alone (registry and channel layer)."""
    return f"rockstar-test-{uuid.uuid4().hex[:12]}"


def cluster_env(redis_url: str, prefix: str, **ws_settings: Any) -> dict[str, str]:
    env = {"REDIS_URL": redis_url, "ROCKSTAR_TEST_PREFIX": prefix}
    if ws_settings:
        env["ROCKSTAR_TEST_WS_SETTINGS"] = json.dumps(ws_settings)
    return env


# -- counts -------------------------------------------------------------------------------
async def test_counts_go_up_and_back_to_zero(server_factory, staff):
    server = server_factory("daphne")
    async with AsyncExitStack() as stack:
        await open_clients(stack, server, 3)
        data = await wait_live(server, staff, lambda d: live_only(d) == 3)
        assert data["mode"] == "local"
        assert live_only(data) == 3 and data["total"] == 3
        assert list(data["by_process"].values()) == [3]
        data = await live(server, staff)
        records = json.loads(http_get(server, "/admin/rockstar_ws/live.json?connections=1", cookie=staff)[2])
        assert [r["route"] for r in records["connections"]] == [LIVE] * 3
        assert all(r["remote_addr"].startswith("127.0.0.1:") for r in records["connections"])
    data = await wait_live(server, staff, lambda d: d["total"] == 0)
    assert data["total"] == 0 and data["by_route"] == {}


async def test_clients_that_vanish_without_a_close_frame_are_uncounted(server_factory, staff):
    server = server_factory("daphne")
    clients = [await connect(server, LIVE) for _ in range(2)]
    assert live_only(await wait_live(server, staff, lambda d: live_only(d) == 2)) == 2
    for ws in clients:
        ws.transport.abort()  # TCP reset, no close frame
    data = await wait_live(server, staff, lambda d: d["total"] == 0)
    assert data["total"] == 0
    stats = await probe(server, "stats")
    assert stats["closed"].get("1006", 0) == 2


async def test_registry_off_counts_nothing_and_limits_nothing(server_factory, staff):
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
        {"LIVE_REGISTRY": False, "MAX_CONNECTIONS": 1})})
    async with AsyncExitStack() as stack:
        await open_clients(stack, server, 2)  # over MAX_CONNECTIONS: limits need the registry
        data = await live(server, staff)
        assert data["mode"] == "off" and data["by_route"] == {}


# -- cluster mode -------------------------------------------------------------------------
async def test_two_processes_show_one_total_and_a_killed_one_drops_out(server_factory, staff, redis_url, prefix,
                                                                      server_env):
    env = cluster_env(redis_url, prefix)
    a = server_factory("daphne", env=env)
    b = server_factory("daphne", env=env)
    async with AsyncExitStack() as stack:
        on_a = await open_clients(stack, a, 2)
        b_clients = [await connect(b, LIVE) for _ in range(3)]
        for ws in b_clients:
            await ws.send("x")
            assert await ws.recv() == "x"
        for server in (a, b):
            data = await wait_live(server, staff, lambda d: live_only(d) == 5)
            assert data["mode"] == "cluster"
            assert live_only(data) == 5
            assert sorted(data["by_process"].values()) == [2, 3]
        # The management command reads the same cluster-wide counts.
        out = subprocess.run([sys.executable, str(ROOT / "manage.py"), "ws_connections"], cwd=ROOT,
                             env={**_base_env(), **server_env, **env}, check=True, capture_output=True,
                             text=True).stdout
        assert "Cluster-wide" in out and "5 live connection(s) in 2 process(es)" in out
        assert LIVE in out

        b.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        data = await wait_live(a, staff, lambda d: live_only(d) == 2, timeout=20)
        gone_after = time.monotonic() - killed_at
        print(f"killed process dropped out of the totals after {gone_after:.1f}s")
        assert live_only(data) == 2 and len(data["by_process"]) == 1
        assert gone_after < 15
        for ws in on_a:  # the survivor keeps serving
            await ws.send("still here")
            assert await ws.recv() == "still here"
        for ws in b_clients:
            ws.transport.abort()
    # The next heartbeat of the survivor removes the dead process from the set of nodes.
    import redis

    client = redis.Redis.from_url(redis_url)
    dead = f"{socket.gethostname()}:{b.proc.pid}".encode()
    async def nodes_now() -> set[bytes]:
        return client.smembers(f"{prefix}:live:nodes")

    nodes = await poll(nodes_now, lambda nodes: dead not in nodes, 10, 0.5)
    assert dead not in nodes and len(nodes) == 1
    assert not client.exists(f"{prefix}:live:node:{dead.decode()}:counts")
    client.close()


async def test_a_process_stopped_with_sigterm_leaves_the_counts_at_once(server_factory, staff, redis_url, prefix,
                                                                        server_env):
    """daphne on SIGTERM: after the 1001 closes the process takes its node out of Redis, so the
    cluster-wide count and the per-user limit drop its connections now, not REGISTRY_TTL (60 s
    here, heartbeat 20 s) after its last heartbeat."""
    env = cluster_env(redis_url, prefix, REGISTRY_TTL=60, REGISTRY_HEARTBEAT=20, MAX_CONNECTIONS_PER_USER=1)
    a = server_factory("daphne", env=env)
    b = server_factory("daphne", env=env)
    alice = {"additional_headers": {"Cookie": session_cookie(server_env, "alice")}}
    import redis

    client = redis.Redis.from_url(redis_url)
    gone = f"{socket.gethostname()}:{b.proc.pid}"
    async with AsyncExitStack() as stack:
        await open_clients(stack, a, 2)
        on_b = await open_clients(stack, b, 2)
        (alice_b,) = await open_clients(stack, b, 1, **alice)
        await wait_live(a, staff, lambda d: live_only(d) == 5)
        assert await refused(a, **alice) == (429, "too many connections for this user")
        assert client.sismember(f"{prefix}:live:nodes", gone)
        b.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        for ws in [*on_b, alice_b]:
            await ws.wait_closed()
            assert ws.close_code == 1001
        await asyncio.to_thread(b.proc.wait, 15)
        assert not client.sismember(f"{prefix}:live:nodes", gone)
        assert not client.exists(f"{prefix}:live:node:{gone}:alive", f"{prefix}:live:node:{gone}:counts",
                                 f"{prefix}:live:node:{gone}:conns")
        data = await wait_live(a, staff, lambda d: live_only(d) == 2, timeout=5)
        assert live_only(data) == 2 and len(data["by_process"]) == 1
        assert time.monotonic() - stopped_at < 20  # well inside the 60 s TTL: not its expiry
        await admitted_again(stack, a, **alice)  # alice's place on b is free at once


async def test_redis_unavailable_fails_open_with_local_counts(server_factory, staff):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
        {"REGISTRY_REDIS_URL": dead, "REGISTRY_REDIS_TIMEOUT": 0.5, "MAX_CONNECTIONS_PER_IP": 2})})
    async with AsyncExitStack() as stack:
        await open_clients(stack, server, 1)
        data = await live(server, staff)
        assert data["mode"] == "local" and "Redis unavailable" in data["error"]
        assert live_only(data) == 1
        # Limits still hold in this process (the probe is the second connection from 127.0.0.1).
        async with connect(server, "/ws/test/probe") as _probe:
            assert (await refused(server))[0] == 429
    assert "Redis unreachable (live registry at redis://" in server.output()
    assert server.output().count("Redis unreachable") == 1  # loud once per outage, not per connection


# -- limits -------------------------------------------------------------------------------
async def test_limit_per_process_refuses_and_admits_after_a_close(server_factory):
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps({"MAX_CONNECTIONS": 3})})
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(connect(server, "/ws/test/probe"))  # the probe counts too
        first, _second = await open_clients(stack, server, 2)
        status, reason = await refused(server)
        assert (status, reason) == (429, "too many connections to this server")
        assert await refused(server, "/ws/test/mw-order") == (429, "too many connections to this server")
        await first.close()
        again = await admitted_again(stack, server)
        await again.send("in again")
        assert await again.recv() == "in again"
        await again.close()
        await _second.close()
        events = await probe(server, "events")
    assert sum(e.startswith("live-handler:") for e in events) == 3  # the refused one never ran
    assert not any(e.startswith("outer:") for e in events)  # nor did middleware
    stats = await probe(server, "stats")
    assert stats["refused"]["429"] == 2


async def test_limit_per_ip_holds_across_processes(server_factory, redis_url, prefix):
    env = cluster_env(redis_url, prefix, MAX_CONNECTIONS_PER_IP=3)
    a = server_factory("daphne", env=env)
    b = server_factory("daphne", env=env)
    async with AsyncExitStack() as stack:
        await open_clients(stack, a, 2)
        (on_b,) = await open_clients(stack, b, 1)
        assert await refused(a) == (429, "too many connections from this address")
        assert await refused(b) == (429, "too many connections from this address")
        await on_b.close()
        ws = await admitted_again(stack, a, "/ws/test/probe")  # admitted again
        await ws.send(json.dumps({"get": "connections"}))
        assert json.loads(await ws.recv()) == 3


async def test_limit_per_user_holds_across_processes(server_factory, redis_url, prefix, server_env):
    env = cluster_env(redis_url, prefix, MAX_CONNECTIONS_PER_USER=1)
    a = server_factory("daphne", env=env)
    b = server_factory("daphne", env=env)
    alice = {"additional_headers": {"Cookie": session_cookie(server_env, "alice")}}
    bob = {"additional_headers": {"Cookie": session_cookie(server_env, "bob")}}
    async with AsyncExitStack() as stack:
        (alice_a,) = await open_clients(stack, a, 1, **alice)
        assert await refused(b, **alice) == (429, "too many connections for this user")
        assert await refused(a, **alice) == (429, "too many connections for this user")
        await open_clients(stack, b, 1, **bob)  # another user is not affected
        await open_clients(stack, b, 2)  # nor are anonymous clients
        await alice_a.close()
        await admitted_again(stack, b, **alice)
    assert await handler_runs(a) == 1
    assert await handler_runs(b) == 4


async def test_limit_per_tenant_with_the_tenants_own_override(server_factory, redis_url, prefix, staff):
    env = {**cluster_env(redis_url, prefix, MAX_CONNECTIONS_PER_TENANT=2,
                         TENANT_RESOLVER="tests.testapp.live_routes.resolve_test_tenant"),
           "ROCKSTAR_TEST_TENANT_LIMITS": json.dumps({"small": 1})}
    a = server_factory("daphne", env=env)
    b = server_factory("daphne", env=env)
    small = {"host": "small.tenants.localhost"}
    big = {"host": "big.tenants.localhost"}
    async with AsyncExitStack() as stack:
        (small_a,) = await open_clients(stack, a, 1, **small)
        assert await refused(b, **small) == (429, "too many connections for this tenant")
        await open_clients(stack, a, 1, **big)
        await open_clients(stack, b, 1, **big)  # the default limit: 2 for a tenant without its own
        assert await refused(a, **big) == (429, "too many connections for this tenant")
        data = await live(a, staff)
        assert data["by_tenant"] == {"big": 2, "small": 1}
        await small_a.close()
        await admitted_again(stack, b, **small)


# -- access to the JSON, the page and the metrics --------------------------------------------
async def test_access_rules_of_the_json_page_and_metrics(server_factory, staff, alice):
    token = uuid.uuid4().hex
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps({"METRICS_TOKEN": token})})
    async with AsyncExitStack() as stack:
        await open_clients(stack, server, 2)
        status, _, body = http_get(server, "/ws-metrics/", cookie=staff)
        assert status == 200
        text = body.decode()
        assert 'rockstar_ws_connections_open{process=' in text or "rockstar_ws_connections_open{" in text
        assert 'rockstar_ws_connections_opened_total{' in text
        assert 'rockstar_ws_connections_limited_total{' in text
        assert http_get(server, "/ws-metrics/", token=token)[0] == 200
        assert http_get(server, "/admin/rockstar_ws/live.json", token=token)[0] == 200
    for who in ({"cookie": alice}, {}, {"token": "wrong"}):
        assert http_get(server, "/ws-metrics/", **who)[0] == 403
        assert http_get(server, "/admin/rockstar_ws/live.json", **who)[0] == 403
        status, headers, _ = http_get(server, "/admin/rockstar_ws/live/", **who)
        assert status == 302 and "/admin/login/" in headers["Location"]
    status, _, body = http_get(server, "/admin/rockstar_ws/live/", cookie=staff)
    assert status == 200 and b"Live connections" in body
    status, _, body = http_get(server, "/admin/", cookie=staff)
    assert status == 200 and b'href="/admin/rockstar_ws/live/"' in body


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test alone (it is stopped and restarted; the shared one never is)."""
    port = free_port()

    class OwnRedis:
        url = f"redis://127.0.0.1:{port}/0"
        proc: subprocess.Popen | None = None

        def start(self) -> None:
            self.proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no"], cwd=tmp_path,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            from tests.servers import wait_for_port

            wait_for_port(port, self.proc)

        def stop(self) -> None:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    if not shutil.which("redis-server"):
        if CI:
            pytest.fail("redis-server is not installed (CI=true: Redis tests must run)")
        pytest.skip("redis-server is not installed")
    redis = OwnRedis()
    redis.start()
    yield redis
    redis.stop()


async def test_redis_outage_serves_locally_then_resyncs(server_factory, staff, own_redis):
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
        {"REGISTRY_REDIS_URL": own_redis.url, "REGISTRY_REDIS_TIMEOUT": 0.5})})
    async with AsyncExitStack() as stack:
        await open_clients(stack, server, 2)
        data = await live(server, staff)
        assert data["mode"] == "cluster" and live_only(data) == 2
        own_redis.stop()
        await open_clients(stack, server, 1)  # still served while Redis is down
        data = await live(server, staff)
        assert data["mode"] == "local" and live_only(data) == 3 and "Redis unavailable" in data["error"]
        own_redis.start()  # an empty Redis: the next heartbeat writes this process's state again
        data = await wait_live(server, staff, lambda d: d["mode"] == "cluster" and live_only(d) == 3)
        assert data["mode"] == "cluster" and live_only(data) == 3
    data = await wait_live(server, staff, lambda d: d["total"] == 0)
    assert data["mode"] == "cluster" and data["total"] == 0
    log = server.output()
    assert "live registry at redis://" in log and "Redis answers again after" in log
