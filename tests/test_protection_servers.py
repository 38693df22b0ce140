"""Protection that depends on the ASGI server: shutdown, keepalive pings, blocking writes."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.client import connect
from tests.hostile import RawClient
from tests.test_protection_e2e import closed_with, protect_env, wait_event, wait_live


async def test_sigterm_to_daphne_closes_open_connections_with_1001(server_factory):
    server = server_factory("daphne", env=protect_env())
    sleeper = await connect(server, "/ws/p/sleeper")
    assert await sleeper.recv() == "ready"
    echo = await connect(server, "/ws/echo")
    await echo.send("hi")
    assert await echo.recv() == "hi"
    assert await wait_live(server, 2) == 2
    server.proc.send_signal(signal.SIGTERM)
    assert await closed_with(sleeper) == 1001
    assert await closed_with(echo) == 1001
    assert echo.close_reason == "server shutting down"
    await asyncio.to_thread(server.proc.wait, 15)


async def test_uvicorn_pings_drop_a_client_that_stops_answering(server_factory):
    server = server_factory("uvicorn", env=protect_env(),
                            args=["--ws-ping-interval", "1", "--ws-ping-timeout", "1"])
    raw = await RawClient.upgrade(server, "/ws/echo")
    assert raw.status == 101
    assert await wait_live(server, 1) == 1
    assert await wait_live(server, 0, timeout=20) == 0
    raw.close()


async def test_daphne_pings_keep_an_answering_client(server_factory):
    """The websockets client answers pings: with a 1 s ping interval it stays open for 4 s."""
    server = server_factory("daphne", env=protect_env(), args=["--ping-interval", "1", "--ping-timeout", "2"])
    async with connect(server, "/ws/echo", ping_interval=None) as ws:
        await asyncio.sleep(4)
        await ws.send("alive")
        assert await ws.recv() == "alive"
    assert await wait_live(server, 0) == 0


async def test_uvicorn_write_to_a_client_that_never_reads_times_out_with_1013(server_factory):
    """uvicorn's send blocks on a full buffer; WRITE_TIMEOUT makes the write fail instead."""
    server = server_factory("uvicorn", env=protect_env(WRITE_TIMEOUT=1.0))
    from tests.conftest import probe

    await probe(server, "clear")
    raw = await RawClient.upgrade(server, "/ws/p/firehose")
    assert raw.status == 101
    assert await wait_event(server, "firehose:closed:", timeout=30) == "firehose:closed:1013:client too slow"
    raw.rst()
    assert await wait_live(server, 0, timeout=20) == 0


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_rate_limit_close_code_reaches_the_client_on_both_servers(server_factory, kind):
    server = server_factory(kind, env=protect_env())
    async with connect(server, "/ws/p/flood-4429") as ws:
        for i in range(50):
            try:
                await ws.send(str(i))
            except Exception:
                break
        assert await closed_with(ws) == 4429


async def test_sigterm_to_uvicorn_closes_with_its_own_1012(server_factory):
    """uvicorn closes open connections itself on shutdown, with 1012 (service restart)."""
    server = server_factory("uvicorn", env=protect_env())
    ws = await connect(server, "/ws/p/sleeper")
    assert await ws.recv() == "ready"
    server.proc.send_signal(signal.SIGTERM)
    assert await closed_with(ws) == 1012
    await asyncio.to_thread(server.proc.wait, 15)
