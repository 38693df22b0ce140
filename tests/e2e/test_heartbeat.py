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


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_with_the_rate_limit_off_pings_sizes_and_order_still_hold(server_factory, kind):
    """Without a rate limit a handler reading in its own task gets ordinary messages straight from
    the server's receive, not through the inbox (engine/consumer.py ``_read_direct``): pings
    are still answered by rockstar_ws and never echoed, the echoes keep their order and type
    across them, and a message over MAX_MESSAGE_SIZE still closes with 1009."""
    from tests.test_protection_e2e import protect_env

    server = server_factory(kind, env=protect_env(MESSAGE_RATE=0, MAX_MESSAGE_SIZE=4096))
    async with connect(server, "/ws/echo", max_size=None) as ws:
        sent: list[str | bytes] = []
        for i in range(200):
            data: str | bytes = f"m{i}" if i % 3 else f"b{i}".encode()
            await ws.send(data)
            sent.append(data)
            if i % 50 == 7:
                await ws.send(json.dumps({"rockstar.ping": i}))
                sent.append(json.dumps({"rockstar.pong": i}, separators=(", ", ": ")))
        got = [await recv(ws) for _ in sent]
        assert got == sent
        await ws.send("x" * 4097)
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd.code == 1009
