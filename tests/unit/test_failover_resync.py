"""A new Redis master (a failover) that lacks the old one's last writes: what each store does.

Replication is asynchronous, so a promoted replica may lack the last writes its old master
acknowledged. The registry and presence notice the new master by its replication id (their
heartbeat scripts return it) and rewrite their own state; a history stream starts a new epoch,
so a recovery from before says ``recovered: false`` instead of reusing offsets. The failover is
played on a private Redis: the lost writes are removed by hand, ``DEBUG CHANGE-REPL-ID`` gives
the master a new replication id, which is what a promotion does, and ``SCRIPT FLUSH`` empties
the script cache, so every script call first meets ``NOSCRIPT`` (redis-py loads the script again)
(tests/e2e/test_sentinel_features.py plays the real failover with a sentinel).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rockstar_ws import WebSocketServer
from rockstar_ws.presence.store import RedisPresenceStore
from rockstar_ws.pubsub.history import RedisHistoryStore
from rockstar_ws.registry import RedisRegistry
from tests.conftest import CI
from tests.servers import PrivateRedis
from tests.unit.test_registry import _ctx


@pytest.fixture
def debug_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server that takes ``DEBUG CHANGE-REPL-ID`` (fails under CI=true without one)."""
    if not shutil.which("redis-server"):
        if CI:
            pytest.fail("redis-server is not installed (CI=true: Redis tests must run)")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path, "--enable-debug-command", "yes").start()
    yield server
    server.stop()


def new_master(server: PrivateRedis) -> None:
    """What a promotion can look like: a new replication id, and no script in the cache (EVALSHA
    answers NOSCRIPT until a script is loaded again); the data stays as the replica had it."""
    client = redis.Redis(port=server.port)
    before = client.info("replication")["master_replid"]
    client.execute_command("DEBUG", "CHANGE-REPL-ID")
    client.script_flush()
    assert client.info("replication")["master_replid"] != before
    client.close()


async def test_registry_rewrites_its_counts_on_a_new_master(debug_redis):
    prefix = "reg:"
    registry = RedisRegistry(debug_redis.url, prefix=prefix, process="host-a:1", heartbeat=30, ttl=60)
    server = WebSocketServer(name="failover")
    try:
        releases = [await registry.admit(_ctx(server, f"10.0.0.{i}:5000")) for i in (1, 2)]
        await registry.beat()  # the heartbeat learns the master's replication id
        assert (await registry.snapshot())["total"] == 2
        # The new master never got the second admission.
        client = redis.Redis(port=debug_redis.port, decode_responses=True)
        counts, conns = f"{prefix}node:host-a:1:counts", f"{prefix}node:host-a:1:conns"
        lost = sorted(client.hkeys(conns))[-1]
        client.hdel(conns, lost)
        for field in client.hkeys(counts):
            client.hset(counts, field, 1)
        await registry.beat()  # the same master: the keys exist, nothing tells the process
        assert (await registry.snapshot())["total"] == 1
        new_master(debug_redis)
        await registry.beat()
        snap = await registry.snapshot(records=True)
        assert snap["total"] == 2 and snap["mode"] == "cluster", snap
        assert len(client.hkeys(conns)) == 2
        for release in releases:
            await release()
        assert (await registry.snapshot())["total"] == 0
        client.close()
    finally:
        await registry.close()


async def test_presence_rewrites_its_members_on_a_new_master(debug_redis):
    prefix = "pres:"
    store = RedisPresenceStore(debug_redis.url, prefix=prefix, process="host-a:1", heartbeat=30, ttl=60)
    try:
        await store.join("room", store.member("a1", user_id="alice", info={"name": "Alice"}))
        await store.join("room", store.member("a2", user_id="bob", info={"name": "Bob"}))
        await store.beat()
        client = redis.Redis(port=debug_redis.port, decode_responses=True)
        client.hdel(f"{prefix}g:room:host-a:1:m", "a2")  # the new master never got Bob's join
        client.hdel(f"{prefix}g:room:host-a:1:u", store.own["room"]["a2"].user_key)
        await store.beat()
        assert [m.connection_id for m in await store.members("room")] == ["a1"]
        new_master(debug_redis)
        await store.beat()
        assert sorted(m.connection_id for m in await store.members("room")) == ["a1", "a2"]
        assert tuple(await store.stats("room")) == (2, 2)
        client.close()
    finally:
        await store.close()


async def test_history_starts_a_new_epoch_on_a_new_master(debug_redis):
    store = RedisHistoryStore(debug_redis.url, key_prefix="hist:")
    try:
        for i in range(3):
            top = await store.append("g", f"p{i}", size=10, ttl=60)
        old = top.epoch
        r = await store.since("g", old, 1)
        assert r.recovered and [p.data for p in r.publications] == ["p1", "p2"]
        new_master(debug_redis)
        r = await store.since("g", old, 3)
        assert not r.recovered and r.publications == [] and r.position.epoch != old
        first = await store.append("g", "after", size=10, ttl=60)
        assert first.epoch == r.position.epoch and first.offset == 1
        r = await store.since("g", first.epoch, 0)
        assert r.recovered and [p.data for p in r.publications] == ["after"]
        # An append is the first to meet the new master too, in a pipeline of several.
        new_master(debug_redis)
        moved, second = await store.append_many("g", ["moved", "moved-2"], size=10, ttl=60)
        assert moved.epoch != first.epoch and (moved.offset, second.offset) == (1, 2)
        assert second.epoch == moved.epoch
        assert not (await store.since("g", first.epoch, 1)).recovered
        # A stream written before the replication id was recorded keeps its epoch (an upgrade).
        redis.Redis(port=debug_redis.port).hdel("hist:g:m", "r")
        r = await store.since("g", moved.epoch, 0)
        assert r.recovered and [p.data for p in r.publications] == ["moved", "moved-2"]
    finally:
        await store.close()
