"""The presence stores (rockstar_ws/presence/store.py): per-user semantics in both stores, and in
Redis several processes, heartbeat expiry (kill -9) and recovery of lost entries."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis

from rockstar_ws import InvalidGroupName
from rockstar_ws.presence import (
    InfoTooLarge,
    LocalPresenceStore,
    Member,
    PresenceCoalescer,
    PresenceError,
    PresenceStats,
    PresenceStore,
    RedisPresenceStore,
)
from tests.conftest import keys_deleted_after
from tests.servers import ROOT
from tests.waiting import wait_until_async

DEADLINE = 30.0  # generous: the machine is shared; every wait below ends on an event before it


async def until(check: Callable[[], Awaitable[bool]], what: str, deadline: float = DEADLINE) -> float:
    """Poll ``check`` until it is true; return the seconds it took, fail after ``deadline``."""
    started = time.monotonic()
    await wait_until_async(check, deadline, 0.05, message=f"timed out after {deadline} s waiting for {what}")
    return time.monotonic() - started


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test only; its keys are deleted afterwards (never FLUSHDB)."""
    with keys_deleted_after(redis_url, f"rockstar_ws:test:presence:{uuid.uuid4().hex}:") as value:
        yield value


@pytest.fixture
async def make_redis_store(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., RedisPresenceStore]]:
    """Redis stores of this test (one per simulated process), closed at the end."""
    stores: list[RedisPresenceStore] = []

    def make(process: str, **kw) -> RedisPresenceStore:
        store = RedisPresenceStore(redis_url, prefix=prefix, process=process, **kw)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture(params=["local", "redis"])
def store(request: pytest.FixtureRequest) -> PresenceStore:
    if request.param == "local":
        return LocalPresenceStore(process="host:1")
    return request.getfixturevalue("make_redis_store")("host:1")


# -- both stores -------------------------------------------------------------------------------

async def test_per_user_joins_and_leaves(store: PresenceStore) -> None:
    tab1 = store.member("c1", user_id=7, info={"name": "alice"})
    assert await store.join("room", tab1) is True
    assert await store.join("room", store.member("c2", user_id="7", info={"name": "alice"})) is False
    assert await store.join("room", store.member("g1", info={"name": "guest"})) is True
    assert await store.join("room", store.member("g2", info={"name": "guest"})) is True  # a guest per connection
    assert await store.stats("room") == PresenceStats(connections=4, users=3)
    members = await store.members("room")
    assert [m.connection_id for m in members] == ["c1", "c2", "g1", "g2"]
    assert members[0] == tab1 and members[0].user_id == "7" and members[0].info == {"name": "alice"}
    assert await store.stats("other") == PresenceStats(0, 0) and await store.members("other") == []

    assert await store.leave("room", "c1") is False  # alice still has c2
    assert await store.leave("room", "c1") is False  # not a member any more
    assert await store.leave("room", "c2") is True
    assert await store.leave("room", "g1") is True
    assert await store.stats("room") == PresenceStats(1, 1)
    left = await store.leave_all("g2")
    assert [(g, m.connection_id, last) for g, m, last in left] == [("room", "g2", True)]
    assert await store.members("room") == [] and await store.stats("room") == PresenceStats(0, 0)
    assert store.own == {}


async def test_rejoin_updates_info_and_tenants_separate_users(store: PresenceStore) -> None:
    assert await store.join("room", store.member("c1", user_id=1, tenant_id="a", info={"name": "x"})) is True
    assert await store.join("room", store.member("c1", user_id=1, tenant_id="a", info={"name": "y"})) is False
    # User 1 of tenant b is not user 1 of tenant a.
    assert await store.join("room", store.member("c2", user_id=1, tenant_id="b")) is True
    assert await store.stats("room") == PresenceStats(2, 2)
    assert [m.info for m in await store.members("room")] == [{"name": "y"}, {}]
    assert await store.leave("room", "c1") is True


async def test_bad_members_are_refused_and_nothing_is_stored(store: PresenceStore) -> None:
    with pytest.raises(InfoTooLarge, match=r"info is 6\d\d bytes of JSON; the limit is 512"):
        await store.join("room", store.member("c1", info={"bio": "x" * 600}))
    with pytest.raises(PresenceError, match="JSON-serialisable"):
        await store.join("room", store.member("c1", info={"tags": {1, 2}}))
    with pytest.raises(PresenceError, match="info must be a dict"):
        store.member("c1", info=["a"])  # type: ignore[arg-type]
    with pytest.raises(PresenceError, match="user_id must be a str or an int"):
        store.member("c1", user_id=1.5)  # type: ignore[arg-type]
    with pytest.raises(PresenceError, match="connection_id must have 1 to 200"):
        store.member("")
    with pytest.raises(InvalidGroupName):
        await store.join("room with spaces", store.member("c1"))
    with pytest.raises(PresenceError, match="only its own connections"):
        await store.join("room", Member("c1", process="elsewhere:9"))
    with pytest.raises(PresenceError, match="user_id must have 1 to 200"):
        store.member("c1", user_id="u" * 201)
    assert await store.stats("room") == PresenceStats(0, 0)

    assert await store.join("room", store.member("c1", user_id="alice")) is True
    with pytest.raises(PresenceError, match="already in group 'room' as another user"):
        await store.join("room", store.member("c1", user_id="bob"))
    assert [m.user_id for m in await store.members("room")] == ["alice"]


async def test_info_is_a_copy() -> None:
    store = LocalPresenceStore(process="host:1")
    info = {"name": "alice"}
    await store.join("room", store.member("c1", info=info))
    info["name"] = "mallory"
    assert (await store.members("room"))[0].info == {"name": "alice"}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(PresenceError, match="at least twice heartbeat"):
        RedisPresenceStore("redis://127.0.0.1:6379/0", heartbeat=3, ttl=5)
    with pytest.raises(PresenceError, match="max_info_bytes"):
        LocalPresenceStore(max_info_bytes=0)


# -- Redis: several processes ------------------------------------------------------------------

async def test_two_processes_list_the_same_members(make_redis_store) -> None:
    a, b = make_redis_store("host-a:1"), make_redis_store("host-b:2")
    await a.join("room", a.member("a1", user_id="alice", info={"name": "Alice"}))
    await b.join("room", b.member("b1", user_id="bob", info={"name": "Bob"}))
    await b.join("room", b.member("b2", info={"name": "guest"}))
    seen_a, seen_b = await a.members("room"), await b.members("room")
    assert seen_a == seen_b
    assert [(m.connection_id, m.user_id, m.process) for m in seen_a] == [
        ("a1", "alice", "host-a:1"), ("b1", "bob", "host-b:2"), ("b2", None, "host-b:2")]
    assert await a.stats("room") == await b.stats("room") == PresenceStats(3, 3)


async def test_two_tabs_across_two_processes(make_redis_store) -> None:
    a, b = make_redis_store("host-a:1"), make_redis_store("host-b:2")
    assert await a.join("room", a.member("a1", user_id="alice")) is True
    assert await b.join("room", b.member("b1", user_id="alice")) is False  # second tab, other process
    assert await a.stats("room") == PresenceStats(2, 1)
    assert await a.leave("room", "a1") is False  # the tab on b is still open
    assert await b.join("room", b.member("b2", user_id="alice")) is False
    assert await b.leave("room", "b1") is False
    assert await b.leave("room", "b2") is True  # the last tab, cluster-wide
    assert await a.join("room", a.member("a2", user_id="alice")) is True
    assert await b.stats("room") == PresenceStats(1, 1)


async def test_a_live_process_outlasts_the_expiry(make_redis_store) -> None:
    a = make_redis_store("host-a:1", heartbeat=0.25, ttl=1.0)
    b = make_redis_store("host-b:2", heartbeat=0.25, ttl=1.0)
    await b.join("room", b.member("b1", user_id="bob"))
    started = time.monotonic()

    async def beaten_past_ttl() -> bool:
        assert [m.connection_id for m in await a.members("room")] == ["b1"]
        return b.beats >= 6 and time.monotonic() - started > 2 * b.ttl

    await until(beaten_past_ttl, "b's heartbeat to keep its member past twice the ttl")


async def test_a_process_whose_heartbeat_stops_drops_out(make_redis_store, redis_url: str, prefix: str) -> None:
    updates = []
    coalescer = PresenceCoalescer(updates.append, autoflush=False)
    a = make_redis_store("host-a:1", heartbeat=0.25, ttl=1.0, on_expired=coalescer.left)
    b = make_redis_store("host-b:2", heartbeat=0.25, ttl=1.0)
    await a.join("room", a.member("a1", user_id="alice"))
    await b.join("room", b.member("b1", user_id="alice"))
    await b.join("room", b.member("b2", user_id="bob", info={"name": "Bob"}))
    await until(lambda: _true(b.beats >= 1), "b's first heartbeat")
    # kill -9 as far as Redis can tell: close() stops the heartbeat and cleans nothing up.
    await b.close()
    stopped = time.monotonic()

    async def only_a_left() -> bool:
        return [m.connection_id for m in await a.members("room")] == ["a1"]

    await until(only_a_left, "b's members to drop out")
    assert time.monotonic() - stopped >= b.ttl * 0.9  # not before its heartbeat key could expire
    assert await a.stats("room") == PresenceStats(1, 1)
    # bob's only connection died with b; alice still has a tab on a, so only bob left.
    await coalescer.flush()
    assert [(m.user_id, m.info) for u in updates for m in u.left] == [("bob", {"name": "Bob"})]
    # b's per-user counts went with it: bob joining again is a first join.
    assert await a.join("room", a.member("a2", user_id="bob")) is True
    assert await a.leave("room", "a1") is True


async def _true(value: bool) -> bool:
    return value


async def test_kill_9_of_a_real_process_removes_its_members(make_redis_store, redis_url: str, prefix: str) -> None:
    a = make_redis_store("host-a:1", heartbeat=0.25, ttl=1.0)
    await a.join("room", a.member("a1", user_id="alice"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.presence_proc", redis_url, prefix, "host-b:2", "3",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
        assert line.strip() == b"ready", line
        assert await a.stats("room") == PresenceStats(4, 4)
        proc.kill()  # SIGKILL: no cleanup, no goodbye
        await proc.wait()
        killed = time.monotonic()

        async def gone() -> bool:
            return await a.stats("room") == PresenceStats(1, 1)

        await until(gone, "the killed process's members to drop out")
        elapsed = time.monotonic() - killed
        assert elapsed <= DEADLINE
        assert [m.connection_id for m in await a.members("room")] == ["a1"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- Redis: lost entries and key expiry ---------------------------------------------------------

async def test_heartbeat_rewrites_entries_redis_lost(make_redis_store, redis_url: str, prefix: str) -> None:
    a = make_redis_store("host-a:1")
    await a.join("room", a.member("a1", user_id="alice", info={"name": "Alice"}))
    await a.join("room", a.member("a2", user_id="alice"))
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(*client.scan_iter(match=prefix + "*"))  # what a Redis restart without persistence does
        assert await a.stats("room") == PresenceStats(0, 0)
        await a.beat()
        assert await a.stats("room") == PresenceStats(2, 1)
        assert [m.info for m in await a.members("room")] == [{"name": "Alice"}, {}]
        assert await a.leave("room", "a1") is False and await a.leave("room", "a2") is True
    finally:
        client.close()


async def test_a_rewrite_never_undoes_joins_and_leaves_in_flight(make_redis_store, redis_url: str,
                                                                 prefix: str) -> None:
    a = make_redis_store("host-a:1")
    for i in range(50):
        await a.join("room", a.member(f"c{i}", user_id=f"u{i % 10}", info={"v": 0}))
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(*client.scan_iter(match=prefix + "*"))
    finally:
        client.close()
    # The beat rewrites from memory while joins (new info), new joins and leaves are in flight.
    await asyncio.gather(
        a.beat(),
        *(a.join("room", a.member(f"c{i}", user_id=f"u{i % 10}", info={"v": 1})) for i in range(0, 50, 2)),
        *(a.join("room", a.member(f"n{i}", user_id=f"u{i}")) for i in range(20)),
        *(a.leave("room", f"c{i}") for i in range(1, 50, 4)),
        a.beat())
    expected = {m.connection_id: m.info for m in a.own["room"].values()}
    assert {m.connection_id: m.info for m in await a.members("room")} == expected
    assert await a.stats("room") == PresenceStats(len(expected), len({m.user_key for m in a.own["room"].values()}))


class HeldJoins(RedisPresenceStore):
    """A store whose joins pause after Redis ran them, before the caller hears back."""

    hold: asyncio.Event | None = None
    reached = asyncio.Event()

    async def _call(self, script: str, args: list) -> object:
        result = await super()._call(script, args)
        if script == "join" and self.hold is not None:
            self.reached.set()
            await self.hold.wait()
        return result


async def test_a_rewrite_waits_for_a_join_redis_ran_but_the_process_has_not_recorded(
        redis_url: str, prefix: str) -> None:
    a = HeldJoins(redis_url, prefix=prefix, process="host-a:1")
    try:
        await a.join("room", a.member("c1", user_id="alice", info={"v": 0}))
        a.hold, a.reached = asyncio.Event(), asyncio.Event()
        join = asyncio.ensure_future(a.join("room", a.member("c1", user_id="alice", info={"v": 1})))
        await asyncio.wait_for(a.reached.wait(), DEADLINE)  # Redis has v1; a.own still has v0
        a._dirty = True  # as after a Redis restart
        beat = asyncio.ensure_future(a.beat())
        # Held back by the join in flight, or (were it not) already done with its stale copy.
        await until(lambda: _true(a._resyncing or beat.done()), "the rewrite to start")
        a.hold.set()
        await asyncio.wait_for(asyncio.gather(join, beat), DEADLINE)
        assert [m.info for m in await a.members("room")] == [{"v": 1}]
    finally:
        await a.close()


async def test_every_key_expires(make_redis_store, redis_url: str, prefix: str) -> None:
    a, b = make_redis_store("host-a:1"), make_redis_store("host-b:2")
    await a.join("room", a.member("a1", user_id="alice"))
    await b.join("room", b.member("b1"))
    await b.join("lobby", b.member("b1"))
    await a.beat()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match=prefix + "*"))
        assert [k[len(prefix):] for k in keys] == [
            "g:lobby:host-b:2:m", "g:lobby:host-b:2:u", "g:lobby:procs",
            "g:room:host-a:1:m", "g:room:host-a:1:u", "g:room:host-b:2:m", "g:room:host-b:2:u", "g:room:procs",
            "node:host-a:1:alive", "node:host-a:1:groups", "node:host-b:2:alive", "node:host-b:2:groups"]
        for key in keys:
            ttl_ms = client.pttl(key)
            limit = 1000 * (a.ttl if key.endswith(":alive") else 3 * a.ttl)
            assert 0 < ttl_ms <= limit, (key, ttl_ms)
    finally:
        client.close()


async def test_a_failing_on_expired_handler_is_logged_not_raised(make_redis_store,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    def broken(group: str, member: Member) -> None:
        raise RuntimeError("handler bug")

    a = make_redis_store("host-a:1", heartbeat=0.25, ttl=1.0, on_expired=broken)
    b = make_redis_store("host-b:2", heartbeat=0.25, ttl=1.0)
    await b.join("room", b.member("b1", user_id="bob"))
    await b.close()  # stops the heartbeat and leaves everything in Redis, as kill -9 would

    async def swept() -> bool:
        return await a.stats("room") == PresenceStats(0, 0)

    with caplog.at_level(logging.ERROR, logger="rockstar_ws.presence"):
        await until(swept, "b's member to drop out")
    assert "on_expired failed for group 'room'" in caplog.text


async def test_a_redis_outage_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisPresenceStore(f"redis://127.0.0.1:{port}/0", heartbeat=0.05, ttl=0.5, timeout=0.2,
                               process="host-a:1")
    try:
        with caplog.at_level(logging.ERROR, logger="rockstar_ws.presence"):
            with pytest.raises(redis.exceptions.ConnectionError):
                await store.join("room", store.member("c1"))
            assert store.own == {}  # nothing recorded for a join that did not reach Redis
            await until(lambda: _true(store.failed_beats >= 3), "three failed heartbeats")
        assert caplog.text.count("heartbeat to Redis failed") == 1
    finally:
        await store.close()
