"""Idle connections on the in-memory layer through a real daphne: a connection's channel is
attached to it (rockstar_ws.layers.InMemoryChannelLayer), so an idle connection holds two tasks
(the consumer's pump and the handler) and messages sent to its channel still arrive, in order."""

from __future__ import annotations

import contextlib
import json

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidHandshake

from tests.client import connect
from tests.conftest import probe
from tests.waiting import poll


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


async def test_a_handshake_daphne_timed_out_is_neither_served_nor_counted(server_factory):
    """daphne answers 403 itself to a handshake the application has not accepted within
    --websocket_connect_timeout, and drops the accept that comes later: the connection must not
    stay counted (it would forever: the client is gone and nothing reads it) nor run its handler."""
    server = server_factory("daphne", args=["--websocket_connect_timeout", "1"])
    assert await probe(server, "connections") == 1  # the probe's own
    # daphne answers 403 or just drops the TCP connection, depending on where its timer fires.
    with pytest.raises((InvalidHandshake, OSError)):
        async with connect(server, "/ws/test/slow-handshake?delay=2.5"):
            pass
    # The middleware's sleep ends 1.5 s after the refusal; the connection must then end at once.
    events = await poll(lambda: probe(server, "events"), lambda e: "slow-handshake ended" in e, timeout=20)
    assert "slow-handshake ended" in events
    assert "slow-handshake handler ran" not in events
    assert await probe(server, "connections") == 1



async def test_a_consumer_whose_accept_daphne_dropped_is_not_counted(server_factory):
    """The same for a Channels consumer served as a route: its accept goes out after daphne has
    refused the handshake, so the connection is not counted and the consumer gets its disconnect."""
    server = server_factory("daphne", args=["--websocket_connect_timeout", "1"])
    assert await probe(server, "connections") == 1  # the probe's own
    with pytest.raises((InvalidHandshake, OSError)):
        async with connect(server, "/ws/test/slow-handshake-consumer?delay=2.5"):
            pass
    events = await poll(lambda: probe(server, "events"),
                        lambda e: "slow-handshake consumer disconnected" in e and "slow-handshake ended" in e,
                        timeout=20)
    assert "slow-handshake consumer accept returned" in events  # its connect ran on to the end
    assert await probe(server, "connections") == 1
    # Every connection this server opened was a probe, closed with 1000, but for the one asking now:
    # the consumer's connection was never opened (counted, then closed abnormally).
    stats = await probe(server, "stats")
    assert stats["closed"] == {"1000": stats["opened"] - 1}, stats
