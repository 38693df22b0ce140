"""History stores (rockstar_ws/pubsub/history.py): in memory, and in a real Redis.

Redis tests use a key prefix of their own, deleted afterwards (never FLUSHDB); the tests of a
Redis that loses its data run a redis-server of their own on a free port. Expiry is awaited by
polling with a deadline, never by a fixed sleep.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis as redis_lib
from django.core.exceptions import ImproperlyConfigured

from rockstar_ws.pubsub.history import (
    HistoryStore,
    MemoryHistoryStore,
    Position,
    RedisHistoryStore,
    history_store_from_config,
    redis_from_config,
)
from tests.servers import PrivateRedis
from tests.waiting import poll

pytestmark = pytest.mark.timeout(120)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0, every: float = 0.05) -> bool:
    """Poll ``check`` until it is true or the deadline passes; the last answer is returned."""
    return bool(await poll(check, bool, timeout, every))


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[HistoryStore]:
    """Each store kind; the Redis one on the shared Redis under this test's prefix."""
    if request.param == "memory":
        s: HistoryStore = MemoryHistoryStore()
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("key_prefix")
        s = RedisHistoryStore(url, key_prefix=prefix)
    yield s
    await s.close()


# -- both stores --------------------------------------------------------------------------------
async def test_offsets_increase_by_one_and_since_returns_what_came_after(store: HistoryStore) -> None:
    start = await store.position("g")
    assert start.offset == 0 and start.epoch
    positions = [await store.append("g", f"m{i}", size=100, ttl=60) for i in range(1, 6)]
    assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
    assert {p.epoch for p in positions} == {start.epoch}  # the epoch made by position() is kept
    assert await store.position("g") == Position(5, start.epoch)

    r = await store.since("g", start.epoch, 2)
    assert r.recovered and r.complete and r.position == Position(5, start.epoch)
    assert [(p.offset, p.data, p.epoch) for p in r.publications] == [
        (3, "m3", start.epoch), (4, "m4", start.epoch), (5, "m5", start.epoch)]

    up_to_date = await store.since("g", start.epoch, 5)
    assert up_to_date.recovered and up_to_date.publications == []

    paged = await store.since("g", start.epoch, 0, limit=2)
    assert paged.recovered and not paged.complete and [p.offset for p in paged.publications] == [1, 2]

    other = await store.position("other")
    assert other.offset == 0 and other.epoch != start.epoch  # groups are separate streams


async def test_bytes_and_text_come_back_as_appended(store: HistoryStore) -> None:
    epoch = (await store.position("g")).epoch
    await store.append("g", b"\x00\xffraw", size=10, ttl=60)
    await store.append("g", "texte \u00e9\u2713", size=10, ttl=60)
    pubs = (await store.since("g", epoch, 0)).publications
    assert [p.data for p in pubs] == [b"\x00\xffraw", "texte \u00e9\u2713"]


async def test_unknown_epoch_or_future_offset_is_not_recovered(store: HistoryStore) -> None:
    epoch = (await store.append("g", "a", size=10, ttl=60)).epoch
    wrong = await store.since("g", "not-the-epoch", 0)
    assert not wrong.recovered and wrong.publications == [] and wrong.position == Position(1, epoch)
    future = await store.since("g", epoch, 7)
    assert not future.recovered and future.position == Position(1, epoch)


async def test_size_cap_keeps_the_last_n(store: HistoryStore) -> None:
    epoch = (await store.position("g")).epoch
    for i in range(1, 11):
        await store.append("g", f"m{i}", size=4, ttl=60)
    kept = await store.since("g", epoch, 6)
    assert kept.recovered and [p.data for p in kept.publications] == ["m7", "m8", "m9", "m10"]
    trimmed = await store.since("g", epoch, 5)  # offset 6 was trimmed: a hole, not a partial answer
    assert not trimmed.recovered and trimmed.publications == [] and trimmed.position == Position(10, epoch)
    assert not (await store.since("g", epoch, 0)).recovered


async def test_each_publication_expires_after_its_ttl(store: HistoryStore) -> None:
    epoch = (await store.position("g")).epoch
    await store.append("g", "long-1", size=10, ttl=120)
    await store.append("g", "short-2", size=10, ttl=0.3)
    await store.append("g", "long-3", size=10, ttl=120)
    # Until offset 2 expires, everything after 0 is recoverable; after, asking from 0 or 1 meets
    # the hole, while asking from 2 still gets offset 3 (expiry is per publication).
    assert await eventually(lambda: _not_recovered(store, "g", epoch, 0)), "offset 2 never expired"
    assert not (await store.since("g", epoch, 1)).recovered
    tail = await store.since("g", epoch, 2)
    assert tail.recovered and [p.data for p in tail.publications] == ["long-3"]
    # Expiry never resets the counter: the next publication continues the same epoch.
    assert await store.append("g", "long-4", size=10, ttl=120) == Position(4, epoch)


async def test_a_stream_whose_every_publication_expired_keeps_its_epoch_and_offset(store: HistoryStore) -> None:
    epoch = (await store.position("g")).epoch
    for i in range(3):
        await store.append("g", f"m{i}", size=10, ttl=0.2)
    assert await eventually(lambda: _not_recovered(store, "g", epoch, 0))
    assert (await store.since("g", epoch, 3)).recovered  # a client that saw everything is fine
    assert await store.position("g") == Position(3, epoch)


async def _not_recovered(store: HistoryStore, group: str, epoch: str, offset: int) -> bool:
    return not (await store.since(group, epoch, offset)).recovered


async def test_bad_arguments_are_clear_errors(store: HistoryStore) -> None:
    with pytest.raises(ValueError, match="size"):
        await store.append("g", "x", size=0, ttl=1)
    with pytest.raises(ValueError, match="ttl"):
        await store.append("g", "x", size=1, ttl=0)
    with pytest.raises(ValueError, match="offset"):
        await store.since("g", "e", -1)
    with pytest.raises(ValueError, match="limit"):
        await store.since("g", "e", 0, limit=0)


# -- concurrency --------------------------------------------------------------------------------
async def test_a_batch_gets_contiguous_offsets_and_keeps_each_payloads_kind(store: HistoryStore) -> None:
    epoch = (await store.append("g", "single", size=100, ttl=60)).epoch
    batch = await store.append_many("g", ["a", b"\x00b", "c\u00e9"], size=100, ttl=60)
    assert batch == [Position(2, epoch), Position(3, epoch), Position(4, epoch)]
    assert await store.append_many("g", [], size=100, ttl=60) == []
    assert (await store.append("g", "after", size=100, ttl=60)) == Position(5, epoch)
    pubs = (await store.since("g", epoch, 0)).publications
    assert [(p.offset, p.data) for p in pubs] == [(1, "single"), (2, "a"), (3, b"\x00b"), (4, "c\u00e9"), (5, "after")]


async def test_a_batch_longer_than_the_size_keeps_its_last_n(store: HistoryStore) -> None:
    epoch = (await store.position("g")).epoch
    positions = await store.append_many("g", [f"m{i}" for i in range(1, 8)], size=3, ttl=60)
    assert [p.offset for p in positions] == list(range(1, 8))
    kept = await store.since("g", epoch, 4)
    assert kept.recovered and [p.data for p in kept.publications] == ["m5", "m6", "m7"]
    assert not (await store.since("g", epoch, 3)).recovered  # offset 4 was trimmed


async def test_redis_batches_of_concurrent_clients_never_interleave(redis_url: str, key_prefix: str) -> None:
    # Four stores (four processes' clients) append batches of 25 at once: each batch is one
    # script, so its offsets are contiguous and hold its payloads in order.
    stores = [RedisHistoryStore(redis_url, key_prefix=key_prefix) for _ in range(4)]
    try:
        async def publisher(n: int, s: RedisHistoryStore) -> list[list[Position]]:
            return list(await asyncio.gather(*(
                s.append_many("g", [f"{n}:{b}:{i}" for i in range(25)], size=10_000, ttl=60) for b in range(10))))

        results = await asyncio.gather(*(publisher(n, s) for n, s in enumerate(stores)))
        epoch = (await stores[0].position("g")).epoch
        stored = {p.offset: p.data for p in (await stores[1].since("g", epoch, 0)).publications}
        assert sorted(stored) == list(range(1, 1001))
        for n, batches in enumerate(results):
            for b, batch in enumerate(batches):
                offsets = [p.offset for p in batch]
                assert offsets == list(range(offsets[0], offsets[0] + 25))
                assert [stored[o] for o in offsets] == [f"{n}:{b}:{i}" for i in range(25)]
    finally:
        for s in stores:
            await s.close()


async def test_memory_offsets_under_concurrent_appends() -> None:
    store = MemoryHistoryStore()

    async def publisher(n: int) -> list[int]:
        out = []
        for i in range(200):
            out.append((await store.append("g", f"{n}:{i}", size=10_000, ttl=60)).offset)
            await asyncio.sleep(0)
        return out

    results = await asyncio.gather(*(publisher(n) for n in range(5)))
    assert sorted(o for r in results for o in r) == list(range(1, 1001))
    assert all(r == sorted(r) for r in results)  # each publisher sees its offsets increase


async def test_redis_offsets_are_unique_and_consecutive_under_concurrent_clients(
        redis_url: str, key_prefix: str) -> None:
    # Five stores, each its own client and connection pool, as five server processes would be.
    stores = [RedisHistoryStore(redis_url, key_prefix=key_prefix) for _ in range(5)]
    try:
        async def publisher(n: int, s: RedisHistoryStore) -> list[int]:
            # 200 appends in flight at once per client: more than its pool's connections, so
            # appends of five clients really interleave in Redis and the pool must wait.
            done = await asyncio.gather(*(s.append("g", f"{n}:{b}:{i}", size=10_000, ttl=60)
                                          for b in range(10) for i in range(20)))
            return [p.offset for p in done]

        results = await asyncio.gather(*(publisher(n, s) for n, s in enumerate(stores)))
        offsets = [o for r in results for o in r]
        assert sorted(offsets) == list(range(1, 1001))
        epoch = (await stores[0].position("g")).epoch
        everything = await stores[1].since("g", epoch, 0)
        assert everything.recovered and [p.offset for p in everything.publications] == list(range(1, 1001))
        # Each payload sits at the offset its append was told.
        told = {f"{n}:{b}:{i}" for n in range(5) for b in range(10) for i in range(20)}
        assert {p.data for p in everything.publications} == told
    finally:
        for s in stores:
            await s.close()


# -- the data goes away -------------------------------------------------------------------------
async def test_deleting_a_groups_keys_changes_its_epoch(redis_url: str, key_prefix: str) -> None:
    store = RedisHistoryStore(redis_url, key_prefix=key_prefix)
    try:
        old = await store.append("g", "before", size=10, ttl=60)
        client = redis_lib.asyncio.Redis.from_url(redis_url)
        await client.delete(f"{key_prefix}g:m", f"{key_prefix}g:s")  # what a flush does to this group
        await client.aclose()
        lost = await store.since("g", old.epoch, old.offset)
        assert not lost.recovered and lost.position.epoch != old.epoch and lost.position.offset == 0
        assert await store.append("g", "after", size=10, ttl=60) == Position(1, lost.position.epoch)
    finally:
        await store.close()


async def test_metadata_lost_but_stream_left_serves_nothing_of_the_old_epoch(redis_url: str, key_prefix: str) -> None:
    # Eviction can drop the small hash and leave the stream: the new epoch must not serve old entries.
    store = RedisHistoryStore(redis_url, key_prefix=key_prefix)
    try:
        for i in range(3):
            await store.append("g", f"old-{i}", size=10, ttl=60)
        client = redis_lib.asyncio.Redis.from_url(redis_url)
        await client.delete(f"{key_prefix}g:m")
        await client.aclose()
        first = await store.append("g", "new-1", size=10, ttl=60)
        assert first.offset == 1
        r = await store.since("g", first.epoch, 0)
        assert r.recovered and [p.data for p in r.publications] == ["new-1"]
    finally:
        await store.close()


async def test_a_redis_restart_without_persistence_changes_the_epoch(private_redis: PrivateRedis) -> None:
    store = RedisHistoryStore(private_redis.url, key_prefix="h:")
    try:
        for i in range(5):
            last = await store.append("news", f"m{i}", size=100, ttl=60)
        assert (await store.since("news", last.epoch, 2)).recovered
        private_redis.stop()
        private_redis.start()  # empty, as after a crash without persistence or a FLUSHALL
        await store.redis.connection_pool.disconnect()
        after = await store.since("news", last.epoch, 2)
        assert not after.recovered and after.publications == []
        assert after.position.epoch != last.epoch and after.position.offset == 0
        nxt = await store.append("news", "again", size=100, ttl=60)
        assert nxt == Position(1, after.position.epoch)
    finally:
        await store.close()


def test_memory_store_forgets_idle_groups_with_a_new_epoch() -> None:
    async def run() -> None:
        store = MemoryHistoryStore(meta_ttl=0.05)
        old = await store.append("g", "x", size=10, ttl=60)
        assert await eventually(lambda: _epoch_changed(store, "g", old.epoch), timeout=10)
        assert not (await store.since("g", old.epoch, old.offset)).recovered
        restarted = MemoryHistoryStore()  # a process restart in embedded mode
        assert (await restarted.position("g")).epoch != old.epoch
    asyncio.run(run())


async def _epoch_changed(store: HistoryStore, group: str, epoch: str) -> bool:
    # since() rather than position(): position() would refresh the group's use and keep it alive
    return (await store.since(group, epoch, 0)).position.epoch != epoch


# -- configuration ------------------------------------------------------------------------------
async def test_sentinel_config_reaches_the_master(tmp_path: Path) -> None:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    master = PrivateRedis(tmp_path / "m")
    (tmp_path / "m").mkdir()
    master.start()
    (tmp_path / "s").mkdir()
    conf = tmp_path / "s" / "sentinel.conf"
    conf.write_text(f"sentinel monitor hist 127.0.0.1 {master.port} 1\n")
    sentinel = PrivateRedis(tmp_path / "s")
    sentinel.start(str(conf), "--sentinel")
    store = history_store_from_config({"REDIS": {"sentinels": [("127.0.0.1", sentinel.port)], "master_name": "hist"},
                                       "KEY_PREFIX": "s:"})
    try:
        assert isinstance(store, RedisHistoryStore)
        pos = await store.append("g", "via sentinel", size=10, ttl=60)
        direct = RedisHistoryStore(master.url, key_prefix="s:")  # the same data, read from the master
        r = await direct.since("g", pos.epoch, 0)
        await direct.close()
        assert r.recovered and [p.data for p in r.publications] == ["via sentinel"]
    finally:
        await store.close()
        sentinel.stop()
        master.stop()


@pytest.mark.parametrize(("config", "match"), [
    ({"REDIS": "http://localhost"}, "must start with redis://"),
    ({"REDIS": 6379}, "must be a URL or a dict"),
    ({"REDIS": {"host": "x"}}, "needs 'address'"),
    ({"REDIS": {"address": "redis://x", "master_name": "m", "sentinels": [("h", 1)]}}, "not both"),
    ({"REDIS": {"sentinels": "h:26379", "master_name": "m"}}, "non-empty list"),
    ({"REDIS": {"sentinels": [("h", "26379")], "master_name": "m"}}, r"\(host, port\) pairs"),
    ({"REDIS": {"sentinels": [("h", 26379)], "master_name": ""}}, "master_name"),
    ({"REDIS": "redis://x", "KEY_PREFIX": ""}, "KEY_PREFIX"),
    ({"KEY_PREFIX": "p:"}, "needs PUBSUB_HISTORY\\['REDIS'\\]"),
    ({"META_TTL": -1}, "META_TTL"),
    ({"REDIS_URL": "redis://x"}, "unknown PUBSUB_HISTORY key"),
])
def test_bad_configuration_names_the_fix(config: dict[str, object], match: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=match):
        history_store_from_config(config)


def test_configuration_shapes() -> None:
    assert isinstance(history_store_from_config(None), MemoryHistoryStore)
    assert isinstance(history_store_from_config({"META_TTL": 60}), MemoryHistoryStore)
    store = history_store_from_config({"REDIS": {"address": "redis://127.0.0.1:1/3", "socket_timeout": 2}})
    assert isinstance(store, RedisHistoryStore) and store.key_prefix == "rockstar_ws:history:"
    kwargs = store.redis.connection_pool.connection_kwargs
    assert kwargs["db"] == 3 and kwargs["socket_timeout"] == 2
    client = redis_from_config({"sentinels": [("127.0.0.1", 1)], "master_name": "m", "sentinel_kwargs": {}})
    assert client.connection_pool.service_name == "m"
