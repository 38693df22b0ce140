"""Fixtures: a migrated database for server processes, real daphne and uvicorn servers, Redis."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis as redis_lib

from tests.client import connect
from tests.servers import ROOT, PrivateRedis, ServerProcess

CI = os.environ.get("CI", "").lower() == "true"
#: Debian's Chromium, which Playwright drives through ``executable_path`` (no browser download).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


@pytest.fixture(scope="session")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of server processes: their own SQLite file, migrated, with the demo data."""
    var = tmp_path_factory.mktemp("server-var")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "ROCKSTAR_VAR_DIR": str(var)}
    env.pop("ROCKSTAR_DB", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run([*manage, "demo_setup"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return {"ROCKSTAR_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "tests.settings"}


def start_server(kind: str, server_env: dict[str, str], tmp: Path, **kw) -> ServerProcess:
    env = {**server_env, **kw.pop("env", {})}
    return ServerProcess(kind, env=env, log_dir=tmp, **kw).start()


@pytest.fixture(scope="session")
def daphne(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A daphne process shared by the tests of a session (embedded mode: in-memory layer)."""
    server = start_server("daphne", server_env, tmp_path_factory.mktemp("daphne"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def uvicorn(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A uvicorn process: it supports the websocket.http.response extension (real refusal statuses)."""
    server = start_server("uvicorn", server_env, tmp_path_factory.mktemp("uvicorn"))
    yield server
    server.stop()


@pytest.fixture
def server_factory(server_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start extra servers (e.g. several daphne processes sharing Redis); all stopped at the end."""
    started: list[ServerProcess] = []

    def factory(kind: str = "daphne", **kw) -> ServerProcess:
        server = start_server(kind, server_env, tmp_path, **kw)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def redis_available() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    """URL of the real Redis. Skipped when absent, except under CI=true, where it fails."""
    if not redis_available():
        if CI:
            pytest.fail("Redis is not reachable on 127.0.0.1:6379 (CI=true: Redis tests must run)")
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@contextmanager
def keys_deleted_after(redis_url: str, prefix: str) -> Iterator[str]:
    """Give ``prefix``; afterwards delete every key under it on the shared Redis (never FLUSHDB:
    other tests and other checkouts share that Redis). The prefix fixtures are built on it."""
    try:
        yield prefix
    finally:
        client = redis_lib.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test on the shared Redis; every key under it is deleted afterwards."""
    with keys_deleted_after(redis_url, f"rockstar_ws:test:{uuid.uuid4().hex[:12]}:") as prefix:
        yield prefix


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test only, on a free port, for tests that stop, restart or flush one.
    Skipped without redis-server, except under CI=true, where it fails."""
    if not shutil.which("redis-server"):
        if CI:
            pytest.fail("redis-server is not installed (CI=true: Redis tests must run)")
        pytest.skip("redis-server is not installed")
    r = PrivateRedis(tmp_path).start()
    yield r
    r.stop()


async def probe(server: ServerProcess, question: str):
    """Ask the server process a question through /ws/test/probe (see tests/testapp/ws_routes.py)."""
    async with connect(server, "/ws/test/probe") as ws:
        await ws.send(json.dumps({"get": question}))
        return json.loads(await ws.recv())


@pytest.fixture
def chromium() -> str:
    """Path of Chromium for browser tests. Skipped when absent, except under CI=true, where it fails."""
    if not shutil.which(CHROMIUM):
        if CI:
            pytest.fail(f"Chromium is not installed at {CHROMIUM} (CI=true: browser tests must run)")
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    return CHROMIUM
