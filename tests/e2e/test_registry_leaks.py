"""The cluster-wide count through a real daphne and a real Redis when handshakes fail half-way:
a batch of admissions that timed out, an application daphne cancelled while its admission waited
for Redis. The count read back (the admin's live JSON, from Redis) must return to exactly the
connections open, without waiting for a heartbeat's rewrite (set 120 s away here: a reconnect
storm keeps handshakes in flight and so postpones that rewrite for as long as it lasts)."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as aioredis
from websockets.exceptions import InvalidHandshake

from tests.client import connect
from tests.e2e.test_ops_live import LIVE, live, open_clients, session_cookie, wait_live
from tests.waiting import poll, wait_until_async

#: No heartbeat inside a test: only the admissions and releases themselves keep Redis exact.
NO_BEAT = {"REGISTRY_HEARTBEAT": 120, "REGISTRY_TTL": 240}


@pytest.fixture(scope="module")
def staff(server_env) -> str:
    return session_cookie(server_env, "admin")


def _total(data) -> int:
    assert data["mode"] == "cluster", data
    return data["by_route"].get(LIVE, 0)


async def test_releases_reach_redis_after_a_batch_timed_out(server_factory, private_redis, staff):
    """One admission batch times out (Redis paused): that handshake is counted in the process and
    served; connections admitted through Redis before it must still be released there."""
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
        {"REGISTRY_REDIS_URL": private_redis.url, "REGISTRY_REDIS_TIMEOUT": 0.5, **NO_BEAT})})
    admin = aioredis.from_url(private_redis.url)
    try:
        async with AsyncExitStack() as stack:
            first = await open_clients(stack, server, 2)
            assert _total(await live(server, staff)) == 2
            await admin.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
            try:
                late = await open_clients(stack, server, 1)  # its batch times out: counted here only
            finally:
                await admin.execute_command("CLIENT", "UNPAUSE")
            for ws in (*first, *late):
                await ws.close()
        data = await wait_live(server, staff, lambda d: _total(d) == 0, timeout=30)
        assert _total(data) == 0 and data["total"] == 0, data
    finally:
        await admin.aclose()


async def test_an_application_cancelled_while_its_admission_waited_is_not_counted(
        server_factory, private_redis, staff):
    """daphne refuses a handshake not accepted within --websocket_connect_timeout, then cancels
    the application after --application-close-timeout: here while its admission waits on a paused
    Redis. The batch still admits it when Redis resumes; the registry must give it back."""
    server = server_factory("daphne", args=["--websocket_connect_timeout", "1", "--application-close-timeout", "1"],
                            env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
                                {"REGISTRY_REDIS_URL": private_redis.url, "REGISTRY_REDIS_TIMEOUT": 10, **NO_BEAT})})
    admin = aioredis.from_url(private_redis.url)
    try:
        async with AsyncExitStack() as stack:
            await open_clients(stack, server, 1)
            assert _total(await live(server, staff)) == 1
            await admin.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
            try:
                with pytest.raises((InvalidHandshake, OSError)):
                    async with connect(server, LIVE, open_timeout=30):
                        pass
                await wait_until_async(lambda: "took too long to shut down and was killed" in server.output(),
                                       timeout=30, interval=0.1)
            finally:
                await admin.execute_command("CLIENT", "UNPAUSE")
            # A handshake after it goes to Redis in a later batch (one in flight, in order): once it
            # is served, the cancelled admission and its release have both run there.
            await open_clients(stack, server, 1)
            data = await poll(lambda: live(server, staff), lambda d: _total(d) == 2, timeout=10)
            assert _total(data) == 2 and data["total"] == 2, data
    finally:
        await admin.aclose()
