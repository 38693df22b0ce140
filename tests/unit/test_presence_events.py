"""The presence coalescer (rockstar_ws/presence/events.py): per-user, at most one update per group
per interval. Timers are driven explicitly through a fake clock, or awaited as events."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rockstar_ws import InvalidGroupName
from rockstar_ws.presence import LocalPresenceStore, Member, PresenceCoalescer, PresenceUpdate

DEADLINE = 30.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def member(i: int | str, user: str | None = None) -> Member:
    return Member(f"c{i}", user_id=user if user is not None else f"u{i}", info={"name": f"n{i}"}, process="p:1")


def manual(updates: list[PresenceUpdate], **kw) -> tuple[PresenceCoalescer, Clock]:
    clock = Clock()
    return PresenceCoalescer(updates.append, autoflush=False, clock=clock, **kw), clock


async def test_two_thousand_joins_in_one_interval_make_one_update() -> None:
    updates: list[PresenceUpdate] = []
    coalescer, clock = manual(updates)
    for i in range(2000):
        coalescer.joined("room", member(i))
    clock.now += 0.999
    assert await coalescer.flush_due() == [] and updates == []
    clock.now += 0.001
    [update] = await coalescer.flush_due()
    assert updates == [update] and update.group == "room" and update.left == ()
    assert [m.connection_id for m in update.joined] == [f"c{i}" for i in range(2000)]
    clock.now += 5
    assert await coalescer.flush_due() == [] and len(updates) == 1


async def test_joins_over_several_intervals_cost_frames_in_proportion_to_members() -> None:
    # 2,000 clients joining over 10 s, each member receiving every update: with one update per
    # interval, frames are at most members x intervals, against one frame per join per member.
    updates: list[PresenceUpdate] = []
    coalescer, clock = manual(updates)
    present, frames = 0, 0
    for i in range(2000):
        coalescer.joined("room", member(i))
        present += 1
        clock.now += 0.005
        for update in await coalescer.flush_due():
            frames += present
            assert 199 <= len(update.joined) <= 201  # 200 joins per interval, give or take float rounding
    clock.now += 1
    for _ in await coalescer.flush_due():
        frames += present
    assert len(updates) == 10
    assert sum(len(u.joined) for u in updates) == 2000
    assert frames <= 10 * 2000  # the naive count broadcast costs 2000 * 2001 / 2 = 2,001,000
    assert coalescer.updates == 10 and coalescer.entries == 2000


async def test_a_join_and_a_leave_inside_one_interval_cancel() -> None:
    updates: list[PresenceUpdate] = []
    coalescer, clock = manual(updates)
    coalescer.joined("room", member(1))
    coalescer.left("room", member(1))
    coalescer.left("room", member(2))  # a reload: gone, then back
    coalescer.joined("room", member(2))
    assert coalescer.pending("room") is None
    clock.now += 1
    assert await coalescer.flush_due() == [] and updates == []
    assert coalescer.cancelled == 2

    coalescer.joined("room", member(3))
    coalescer.left("room", member(3))
    coalescer.joined("room", member(3))  # joined, left, joined: a join
    coalescer.left("room", member(4))
    [update] = await coalescer.flush()
    assert [m.user_id for m in update.joined] == ["u3"] and [m.user_id for m in update.left] == ["u4"]


async def test_tabs_of_one_user_are_one_join_and_one_leave() -> None:
    store = LocalPresenceStore(process="p:1")
    updates: list[PresenceUpdate] = []
    coalescer, clock = manual(updates)

    async def join(conn: str, user: str | None) -> None:
        m = store.member(conn, user_id=user)
        if await store.join("room", m):
            coalescer.joined("room", m)

    async def leave(conn: str) -> None:
        m = store.own["room"][conn]
        if await store.leave("room", conn):
            coalescer.left("room", m)

    await join("a1", "alice")
    await join("a2", "alice")
    await join("g1", None)
    await join("g2", None)
    clock.now += 1
    [update] = await coalescer.flush_due()
    assert [m.connection_id for m in update.joined] == ["a1", "g1", "g2"]
    await leave("a1")
    clock.now += 1
    assert await coalescer.flush_due() == []  # alice still has a tab
    await leave("a2")
    await leave("g1")
    clock.now += 1
    [update] = await coalescer.flush_due()
    assert [m.connection_id for m in update.left] == ["a2", "g1"] and update.joined == ()


async def test_groups_are_coalesced_separately() -> None:
    updates: list[PresenceUpdate] = []
    coalescer, clock = manual(updates)
    coalescer.joined("a", member(1))
    clock.now += 0.5
    coalescer.joined("b", member(2))
    clock.now += 0.5
    assert [u.group for u in await coalescer.flush_due()] == ["a"]
    clock.now += 0.5
    assert [u.group for u in await coalescer.flush_due()] == ["b"]
    with pytest.raises(InvalidGroupName):
        coalescer.joined("not a group", member(3))


async def test_timers_emit_at_most_once_per_interval() -> None:
    loop = asyncio.get_running_loop()
    got: asyncio.Queue[tuple[float, PresenceUpdate]] = asyncio.Queue()

    async def emit(update: PresenceUpdate) -> None:
        got.put_nowait((loop.time(), update))

    coalescer = PresenceCoalescer(emit, interval=0.2)
    fed = loop.time()
    for i in range(50):
        coalescer.joined("room", member(i))
    at, first = await asyncio.wait_for(got.get(), DEADLINE)
    assert len(first.joined) == 50 and at - fed >= 0.19  # asyncio timers may fire a tick early
    coalescer.left("room", member(0))
    coalescer.joined("room", member(99))
    at2, second = await asyncio.wait_for(got.get(), DEADLINE)
    assert [m.user_id for m in second.left] == ["u0"] and [m.user_id for m in second.joined] == ["u99"]
    assert at2 - at >= 0.19
    assert got.empty()
    await coalescer.aclose()


async def test_a_failing_emit_is_logged_and_later_updates_still_go(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def emit(update: PresenceUpdate) -> None:
        seen.append(update.group)
        if update.group == "bad":
            raise RuntimeError("layer down")

    coalescer = PresenceCoalescer(emit, autoflush=False)
    coalescer.joined("bad", member(1))
    coalescer.joined("good", member(2))
    with caplog.at_level(logging.ERROR, logger="rockstar_ws.presence"):
        assert [u.group for u in await coalescer.flush()] == ["bad", "good"]
    assert seen == ["bad", "good"]
    assert "emitting the update of group 'bad' failed" in caplog.text


async def test_updates_of_a_group_are_emitted_in_order() -> None:
    release = asyncio.Event()
    order: list[str] = []

    async def emit(update: PresenceUpdate) -> None:
        if update.joined[0].user_id == "u1":
            await release.wait()  # the first update is slow to deliver
        order.append(update.joined[0].user_id or "")

    coalescer = PresenceCoalescer(emit, autoflush=False)
    coalescer.joined("room", member(1))
    first = asyncio.ensure_future(coalescer.flush())
    await asyncio.sleep(0)
    coalescer.joined("room", member(2))
    second = asyncio.ensure_future(coalescer.flush())
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), DEADLINE)
    assert order == ["u1", "u2"]


async def test_max_entries_and_what_clients_see() -> None:
    updates: list[PresenceUpdate] = []
    coalescer, _clock = manual(updates, max_entries=4)
    for i in range(8):
        coalescer.joined("room", member(i))
    coalescer.left("room", member(50))
    coalescer.left("room", member(51))
    [update] = await coalescer.flush()
    assert len(update.left) == 2 and len(update.joined) == 2 and update.omitted == 6
    data = update.as_dict()
    assert data["omitted"] == 6 and data["group"] == "room"
    left = data["left"][0]
    assert set(left) == {"connection_id", "user_id", "tenant_id", "info", "joined_at"}
    assert (left["connection_id"], left["user_id"], left["info"]) == ("c50", "u50", {"name": "n50"})
    assert all("process" not in m for m in data["joined"] + data["left"])
    with pytest.raises(ValueError, match="max_entries"):
        PresenceCoalescer(updates.append, max_entries=0)
    with pytest.raises(ValueError, match="interval"):
        PresenceCoalescer(updates.append, interval=0)
