"""Settings that change what a real daphne does: refusal mode and global middleware."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed

from tests.client import connect, refusal_status
from tests.servers import ROOT, ServerProcess


@pytest.fixture
def close_mode_server(server_factory):
    return server_factory(env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps({
        "REFUSAL_MODE": "close",
        "MIDDLEWARE": ["tests.testapp.ws_routes.global_mw"],
    })})


@pytest.mark.parametrize(("path", "code"), [
    ("/ws/does-not-exist", 4404),
    ("/ws/test/private", 4401),
    ("/ws/test/guarded", 4403),
])
async def test_close_mode_refusals_carry_4xxx_codes(close_mode_server, path, code):
    async with connect(close_mode_server, path) as ws:
        with pytest.raises(ClientClosed):
            await ws.recv()
    assert ws.close_code == code
    assert ws.close_reason


async def test_global_middleware_from_settings_runs_outside_route_middleware(close_mode_server, daphne):
    async with connect(close_mode_server, "/ws/test/state") as ws:
        assert json.loads(await ws.recv()) == ["global", "route"]
    async with connect(daphne, "/ws/test/state") as ws:  # the default server process has none
        assert json.loads(await ws.recv()) == ["route"]


async def test_http_mode_is_the_default(daphne):
    status, _ = await refusal_status(daphne, "/ws/does-not-exist")
    assert status == 404


# -- a broken configuration never starts ------------------------------------------------------
BROKEN = [
    ({"INBOX_SIZE": "lots"}, "(rockstar_ws.E003) ROCKSTAR_WS['INBOX_SIZE'] is 'lots'\n\tHINT: Use a whole number >= 0"),
    ({"RATE_LIMIT_POLICY": "ban"}, "(rockstar_ws.E202) ROCKSTAR_WS['RATE_LIMIT_POLICY'] is 'ban'"),
    ({"INBOX_SIZ": 3}, "'INBOX_SIZ' (did you mean 'INBOX_SIZE'?)"),
]


def _check_output(server_env, ws: dict) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, **server_env, "ROCKSTAR_TEST_WS_SETTINGS": json.dumps(ws)})
    assert done.returncode != 0
    return done.stdout + done.stderr


@pytest.mark.parametrize("kind", ["daphne", "uvicorn", "runserver"])
@pytest.mark.parametrize(("ws", "message"), BROKEN)
async def test_a_broken_configuration_stops_the_server_with_the_check_message(server_env, tmp_path, kind, ws,
                                                                               message):
    reported = _check_output(server_env, ws)
    assert message in reported  # manage.py check reports it (with its id and hint) ...
    server = ServerProcess(kind, env={**server_env, "ROCKSTAR_TEST_WS_SETTINGS": json.dumps(ws)}, log_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"exited with [1-9]"):
        server.start()  # ... and the server exits before it listens
    try:
        out = server.output()
        assert "ImproperlyConfigured" in out and message in out
        with pytest.raises(OSError):  # nothing ever listened, so no handshake can get a 500
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        server.stop()
