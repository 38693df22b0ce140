"""Settings that change what a real daphne does: refusal mode and global middleware."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed

from tests.client import connect, refusal_status


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
