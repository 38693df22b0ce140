"""The catch-up/live merge (rockstar_ws/pubsub/recovery.py) under concurrent publications.

A small fan-out stands in for the channel layer: publishers append to a real store (memory, or
the shared Redis under a prefix of the test), then hand the publication to every subscriber
through one delivery queue per publishing "process", so two processes' publications reach a
subscriber out of order, and a lossy delivery drops some, as channels-redis does over capacity.
Every test waits on events (a count reached, a queue drained) with a deadline.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from rockstar_ws.pubsub.history import HistoryStore, MemoryHistoryStore, Position, Publication, RedisHistoryStore
from rockstar_ws.pubsub.recovery import LiveMerge, Unrecoverable

pytestmark = pytest.mark.timeout(180)

GROUP = "news"


class Subscriber:
    """One subscription: what the merge emits, in emission order."""

    def __init__(self, store: HistoryStore, **kw: int) -> None:
        self.merge = LiveMerge(store, GROUP, **kw)
        self.out: list[Publication] = []
        self.errors: list[Exception] = []
        self.changed = asyncio.Event()

    async def deliver(self, pub: Publication) -> None:
        try:
            self.out.extend(await self.merge.live(pub))
        except Unrecoverable as exc:
            self.errors.append(exc)
        self.changed.set()

    async def wait_for_offset(self, offset: int, timeout: float = 60.0) -> None:
        async def reached() -> None:
            while not self.errors and not ((pos := self.merge.position) and pos.offset >= offset):
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(reached(), timeout)


class Process:
    """A publishing process: appends, then delivers through its own queue (its own fan-out)."""

    def __init__(self, store: HistoryStore, subscribers: list[Subscriber], rng: random.Random,
                 drop: float = 0.0) -> None:
        self.store, self.subscribers, self.rng, self.drop = store, subscribers, rng, drop
        self.queue: asyncio.Queue[tuple[Publication, bool]] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._deliver())

    async def publish(self, data: str, reliable: bool = False) -> Position:
        pos = await self.store.append(GROUP, data, size=100_000, ttl=300)
        self.queue.put_nowait((Publication(pos.offset, pos.epoch, data), reliable))
        return pos

    async def _deliver(self) -> None:
        while True:
            pub, reliable = await self.queue.get()
            for _ in range(self.rng.randrange(3)):  # a varying delay, so the processes interleave
                await asyncio.sleep(0)
            for s in list(self.subscribers):
                if reliable or self.rng.random() >= self.drop:
                    await s.deliver(pub)
            self.queue.task_done()

    async def drained(self) -> None:
        await asyncio.wait_for(self.queue.join(), 60)

    def stop(self) -> None:
        self.task.cancel()


async def reconnect_under_load(store: HistoryStore, *, missed: int, during: int, processes: int, drop: float,
                               seed: int, page_size: int = 7) -> tuple[Subscriber, list[int], Position]:
    """A client saw the group up to some point, missed ``missed`` publications, then subscribes
    again with its position while ``during`` more publications keep coming from ``processes``."""
    rng = random.Random(seed)
    subscribers: list[Subscriber] = []
    procs = [Process(store, subscribers, rng, drop) for _ in range(processes)]
    try:
        for i in range(3):
            await procs[0].publish(f"seen-{i}")
        since = await store.position(GROUP)
        for i in range(missed):
            await procs[i % processes].publish(f"missed-{i}")
        sub = Subscriber(store, page_size=page_size)

        async def steady() -> list[int]:
            offsets = []
            for i in range(during):
                offsets.append((await procs[i % processes].publish(f"live-{i}")).offset)
                await asyncio.sleep(0)  # one publication per turn of the loop: a steady rate
            return offsets

        publishing = asyncio.ensure_future(steady())
        await asyncio.sleep(0)
        subscribers.append(sub)  # the join completes before the history is read
        catch = await sub.merge.start(since)
        sub.out[:0] = catch.publications  # what start() delivers comes before anything live
        assert catch.recovered is True
        await publishing
        top = await store.position(GROUP)
        for p in procs:
            await p.drained()
        if drop:
            # A lost live publication is noticed by the next one: one last publication closes it.
            await procs[0].publish("last", reliable=True)
            await procs[0].drained()
            top = await store.position(GROUP)
        await sub.wait_for_offset(top.offset)
        return sub, list(range(since.offset + 1, top.offset + 1)), since
    finally:
        for p in procs:
            p.stop()


def check_exactly_once(sub: Subscriber, expected: list[int]) -> None:
    assert sub.errors == []
    offsets = [p.offset for p in sub.out]
    assert offsets == expected, f"gap or duplicate: {_diff(offsets, expected)}"
    assert all(p.data for p in sub.out)


def _diff(got: list[int], want: list[int]) -> str:
    dups = sorted({o for o in got if got.count(o) > 1})
    missing = sorted(set(want) - set(got))
    return f"duplicates {dups[:10]}, missing {missing[:10]}, order ok: {got == sorted(got)}"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[HistoryStore]:
    if request.param == "memory":
        s: HistoryStore = MemoryHistoryStore()
    else:
        s = RedisHistoryStore(request.getfixturevalue("redis_url"), key_prefix=request.getfixturevalue("key_prefix"))
    yield s
    await s.close()


# -- the boundary between catch-up and live ------------------------------------------------------
async def test_fifty_missed_then_live_under_a_steady_rate(store: HistoryStore) -> None:
    sub, expected, _ = await reconnect_under_load(store, missed=50, during=300, processes=2, drop=0.0, seed=1)
    check_exactly_once(sub, expected)
    assert sub.merge.duplicates > 0  # the boundary was really crossed: live copies of read history


async def test_lost_and_reordered_live_publications_are_refilled_from_history(store: HistoryStore) -> None:
    sub, expected, _ = await reconnect_under_load(store, missed=20, during=300, processes=3, drop=0.1, seed=2)
    check_exactly_once(sub, expected)
    assert sub.merge.refills > 0


async def test_a_thousand_missed_publications_come_in_pages(store: HistoryStore) -> None:
    sub, expected, _ = await reconnect_under_load(store, missed=1000, during=50, processes=1, drop=0.0, seed=3,
                                                   page_size=300)
    check_exactly_once(sub, expected)


# No shrinking phase: a shrink of a timing-dependent case can run for minutes on a shared machine;
# the failing example is printed as drawn.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(missed=st.integers(0, 60), during=st.integers(0, 120), processes=st.integers(1, 3),
       drop=st.sampled_from([0.0, 0.05, 0.3]), seed=st.integers(0, 2**32), page_size=st.integers(1, 40))
@example(missed=0, during=0, processes=1, drop=0.0, seed=0, page_size=1)
@example(missed=0, during=50, processes=2, drop=0.3, seed=5, page_size=1)
def test_property_every_publication_once_in_order(missed: int, during: int, processes: int, drop: float,
                                                  seed: int, page_size: int) -> None:
    async def run() -> None:
        sub, expected, _ = await reconnect_under_load(
            MemoryHistoryStore(), missed=missed, during=during, processes=processes, drop=drop, seed=seed,
            page_size=page_size)
        check_exactly_once(sub, expected)
    asyncio.run(run())


# -- what cannot be recovered ---------------------------------------------------------------------
async def test_a_fresh_subscription_gets_no_history_and_only_later_publications(store: HistoryStore) -> None:
    for i in range(5):
        await store.append(GROUP, f"old-{i}", size=100, ttl=60)
    merge = LiveMerge(store, GROUP)
    pos = await store.append(GROUP, "buffered", size=100, ttl=60)
    assert await merge.live(Publication(pos.offset, pos.epoch, "buffered")) == []  # still buffering
    catch = await merge.start(None)
    # The buffered one was appended before the position was read: it is part of what the client loads.
    assert catch.recovered is None and catch.position == pos and catch.publications == []
    nxt = await store.append(GROUP, "next", size=100, ttl=60)
    assert [p.data for p in await merge.live(Publication(nxt.offset, nxt.epoch, "next"))] == ["next"]
    assert await merge.live(Publication(nxt.offset, nxt.epoch, "next")) == []  # a late copy


async def test_beyond_the_size_cap_recovery_says_false_and_goes_live_from_the_top(store: HistoryStore) -> None:
    since = await store.position(GROUP)
    for i in range(30):
        top = await store.append(GROUP, f"m{i}", size=10, ttl=60)
    merge = LiveMerge(store, GROUP)
    catch = await merge.start(since)
    assert catch.recovered is False and catch.publications == [] and catch.position == top
    nxt = await store.append(GROUP, "live", size=10, ttl=60)
    assert [p.offset for p in await merge.live(Publication(nxt.offset, nxt.epoch, "live"))] == [31]


async def test_more_missed_than_max_recovery_is_not_recovered(store: HistoryStore) -> None:
    since = await store.position(GROUP)
    for i in range(20):
        top = await store.append(GROUP, f"m{i}", size=100, ttl=60)
    catch = await LiveMerge(store, GROUP, max_recovery=19).start(since)
    assert catch.recovered is False and catch.position == top
    catch = await LiveMerge(store, GROUP, max_recovery=20, page_size=3).start(since)
    assert catch.recovered is True and [p.offset for p in catch.publications] == list(range(1, 21))


async def test_another_epoch_is_not_recovered(store: HistoryStore) -> None:
    await store.append(GROUP, "x", size=100, ttl=60)
    catch = await LiveMerge(store, GROUP).start(Position(1, "an-old-epoch"))
    assert catch.recovered is False and catch.position.epoch != "an-old-epoch"


async def test_a_live_gap_the_history_no_longer_covers_is_unrecoverable(store: HistoryStore) -> None:
    merge = LiveMerge(store, GROUP)
    await merge.start(None)
    for i in range(10):
        last = await store.append(GROUP, f"m{i}", size=3, ttl=60)  # none delivered live; 1..7 trimmed
    with pytest.raises(Unrecoverable, match="no longer in the history"):
        await merge.live(Publication(last.offset, last.epoch, "m9"))


async def test_a_live_publication_of_another_epoch_is_unrecoverable(store: HistoryStore) -> None:
    merge = LiveMerge(store, GROUP)
    await merge.start(None)
    with pytest.raises(Unrecoverable, match="epoch"):
        await merge.live(Publication(1, "a-new-epoch", "x"))


async def test_a_full_buffer_drops_and_refills_instead_of_growing(store: HistoryStore) -> None:
    since = await store.position(GROUP)
    merge = LiveMerge(store, GROUP, max_buffer=5)
    live = []
    for i in range(40):
        pos = await store.append(GROUP, f"m{i}", size=100, ttl=60)
        live.append(Publication(pos.offset, pos.epoch, f"m{i}"))
    for pub in live[:20]:
        assert await merge.live(pub) == []
    assert len(merge._buffer) == 5
    catch = await merge.start(since)
    out = [p.offset for p in catch.publications]
    for pub in live[20:]:
        out.extend(p.offset for p in await merge.live(pub))
    assert out == list(range(1, 41))


async def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="page_size"):
        LiveMerge(MemoryHistoryStore(), GROUP, page_size=0)
    merge = LiveMerge(MemoryHistoryStore(), GROUP)
    await merge.start(None)
    with pytest.raises(RuntimeError, match="already"):
        await merge.start(None)
