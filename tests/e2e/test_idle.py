"""Idle connections on the in-memory layer through a real daphne: a connection's channel is
attached to it (rockstar_ws.layers.InMemoryChannelLayer), so an idle connection holds two tasks
(the consumer's pump and the handler) and messages sent to its channel still arrive, in order."""

from __future__ import annotations

import contextlib
import json

from websockets.exceptions import ConnectionClosed as ClientClosed

from tests.client import connect


async def _tasks(ws) -> dict:
    await ws.send("tasks")
    return json.loads(await ws.recv())


async def test_channel_messages_reach_an_attached_connection_in_order_and_close_it(daphne):
    async with connect(daphne, "/ws/test/relay") as ws:
        assert (await _tasks(ws))["layer"] == "rockstar_ws.layers"
        await ws.send("send 60")
        assert [await ws.recv() for _ in range(60)] == [f"r{i}" for i in range(60)]
        await ws.send("send 3")  # a second burst after the first one's delivery task ended
        assert [await ws.recv() for _ in range(3)] == ["r0", "r1", "r2"]
        await ws.send("close")
        try:
            extra = await ws.recv()
        except ClientClosed:
            extra = None
        assert extra is None
        assert ws.close_code == 4321 and ws.close_reason == "relayed"


async def test_an_idle_connection_holds_the_pump_and_the_handler_only(server_factory):
    server = server_factory("daphne")
    n = 60
    async with contextlib.AsyncExitStack() as stack:
        warm = [await stack.enter_async_context(connect(server, "/ws/test/relay")) for _ in range(5)]
        for ws in warm:  # a round trip each: every handler runs, whatever starts lazily has started
            await _tasks(ws)
        before = (await _tasks(warm[0]))["tasks"]
        more = [await stack.enter_async_context(connect(server, "/ws/test/relay")) for _ in range(n)]
        for ws in more:
            await _tasks(ws)
        after = (await _tasks(warm[0]))["tasks"]
    # channels' own in-memory layer would add a listener task per connection: 3 each.
    assert after - before == 2 * n, (before, after)
