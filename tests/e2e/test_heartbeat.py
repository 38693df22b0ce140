"""The in-band heartbeat through a real daphne: the pump answers ``{"rockstar.ping": n}`` with
``{"rockstar.pong": n}`` on every route, and the handler never sees the ping."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from tests.auth_helpers import user_ids
from tests.client import connect

pytestmark = pytest.mark.asyncio


async def recv(ws, timeout: float = 30) -> str:
    return await asyncio.wait_for(ws.recv(), timeout)


async def test_ping_is_answered_by_the_pump_and_not_echoed(daphne):
    async with connect(daphne, "/ws/echo") as ws:
        await ws.send('{"rockstar.ping":1}')
        await ws.send(json.dumps({"rockstar.ping": 2**53 - 1}))
        await ws.send("end")
        # An echo of a ping would arrive before "end": exactly the pongs, then the marker.
        assert [await recv(ws) for _ in range(3)] == ['{"rockstar.pong": 1}', '{"rockstar.pong": 9007199254740991}',
                                                       "end"]


async def test_ping_on_a_token_route_next_to_the_refresh_message(daphne, server_env):
    from rockstar_ws.auth.tokens import access_token_for

    alice = user_ids(server_env)["alice"]
    token = str(access_token_for(alice, scopes=["chat:write"], lifetime=600))
    async with connect(daphne, "/ws/private", subprotocols=["rockstar.bearer", token]) as ws:
        await ws.send(json.dumps({"rockstar.ping": 7}))
        await ws.send(json.dumps({"rockstar.refresh": token}))
        await ws.send("hi")
        first, second, third = [await recv(ws) for _ in range(3)]
        assert first == '{"rockstar.pong": 7}'
        assert json.loads(second).keys() == {"rockstar.refreshed"}
        assert third == f"User {alice}: hi"


@pytest.mark.parametrize("text", ['{"rockstar.ping": "1"}', '{"rockstar.ping": -1}', '{"rockstar.ping": 1.5}',
                                  '{"rockstar.ping": true}', '{"rockstar.ping": 1, "x": 2}', '{"rockstar.ping"',
                                  '{"rockstar.ping": 9007199254740992}', '{"rockstar.ping": ' + "[" * 100000])
async def test_a_malformed_ping_closes_with_4400(daphne, text):
    async with connect(daphne, "/ws/echo") as ws:
        await ws.send(text)
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4400, "malformed ping message")


async def test_other_text_is_still_ordinary_data(daphne):
    async with connect(daphne, "/ws/echo") as ws:
        for text in ['{"rockstar.pingx": 1}', ' {"rockstar.ping": 1}', '{"rockstar.pong": 1}']:
            await ws.send(text)
            assert await recv(ws) == text
