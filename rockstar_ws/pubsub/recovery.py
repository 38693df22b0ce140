"""The catch-up/live merge of one subscription: every publication once, in offset order.

A subscription that recovers reads the group's history while new publications keep arriving
live. Read history first and join the group afterwards, and what is published in between is
lost; join first and emit both, and it is duplicated. The merge (Centrifugo's ``PubSubSync`` +
``MergePublications`` in one object):

1. the subscription creates a :class:`LiveMerge` and joins the group; from then on every live
   publication goes to :meth:`LiveMerge.live`, which *buffers* it (the server must finish the
   join, e.g. the layer's ``group_add``, before step 2, or a publication can slip between);
2. :meth:`LiveMerge.start` reads the history after the client's position (in pages, up to
   ``max_recovery``), then drains the buffer: buffered publications with an offset at or below
   the last one emitted are dropped, later ones follow in offset order;
3. from then on :meth:`LiveMerge.live` passes publications through, dropping any offset at or
   below the last emitted (a late copy, or one already read from history).

A *gap* in live publications (offset jumps past last + 1) happens when two processes' fan-outs
reach a subscriber out of order, or when the layer dropped a message (channels-redis drops
group messages over capacity). The merge then refills from history: it reads what is missing,
emits it, then the publication that revealed the gap. When the history cannot fill it (trimmed
or expired meanwhile), or a live publication carries another epoch (the history was lost while
subscribed), :class:`Unrecoverable` is raised: the server ends that subscription with the code
``insufficient_state`` (docs/protocol.md) and the client subscribes again from its position,
learning ``recovered: false`` if the history cannot help.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from rockstar_ws.pubsub.history import HistoryStore, Position, Publication

__all__ = ["CatchUp", "LiveMerge", "Unrecoverable"]


class Unrecoverable(Exception):
    """Live publications cannot continue without a hole: the subscription must start again."""


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What :meth:`LiveMerge.start` found.

    ``recovered``: None when no position was given (a fresh subscription), else whether every
    publication after it is in ``publications``. ``position``: the subscription's position once
    ``publications`` are delivered (the last one's offset, or the stream's top when there are none).
    """

    recovered: bool | None
    position: Position
    publications: list[Publication]


class _State(enum.Enum):
    BUFFERING = "buffering"
    LIVE = "live"


class LiveMerge:
    """Merge a group's history with its live publications for one subscription (see module doc).

    ``page_size``: publications read from the store per round trip. ``max_recovery``: the most
    publications a catch-up (or a refill) delivers; a client further behind gets
    ``recovered=False`` and reloads its state, which is cheaper than replaying a long history.
    ``max_buffer``: live publications kept while the history is read; later ones are dropped
    and refilled from history like any other gap, so a slow catch-up costs reads, not memory.
    """

    def __init__(self, store: HistoryStore, group: str, *, page_size: int = 500,
                 max_recovery: int = 10_000, max_buffer: int = 10_000) -> None:
        for name, value in (("page_size", page_size), ("max_recovery", max_recovery), ("max_buffer", max_buffer)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.store = store
        self.group = group
        self.page_size = page_size
        self.max_recovery = max_recovery
        self.max_buffer = max_buffer
        self._state = _State.BUFFERING
        self._buffer: list[Publication] = []
        self._lock = asyncio.Lock()
        self._last = 0
        self._epoch = ""
        #: Publications dropped as duplicates, and refills from history (for tests and metrics).
        self.duplicates = 0
        self.refills = 0

    @property
    def position(self) -> Position | None:
        """The last emitted position, once :meth:`start` has returned."""
        return None if self._state is _State.BUFFERING else Position(self._last, self._epoch)

    async def start(self, since: Position | None = None) -> CatchUp:
        """Read the history after ``since`` and drain the buffer; then publications go live.

        Call it once, after the subscription joined the group. Raises :class:`Unrecoverable`
        when a buffered publication belongs to another epoch than the history just read.
        """
        if self._state is not _State.BUFFERING:
            raise RuntimeError("LiveMerge.start() was already called")
        async with self._lock:
            recovered: bool | None = None
            pubs: list[Publication] = []
            if since is None:
                top = await self.store.position(self.group)
            else:
                recovered, top, pubs = await self._read(since, until=None)
            self._epoch, self._last = top.epoch, pubs[-1].offset if pubs else top.offset
            # No await between taking the buffer and going live: live() calls that arrive
            # meanwhile either buffered before this point or queue on the lock after it.
            buffered, self._buffer = sorted(self._buffer, key=lambda p: p.offset), []
            self._state = _State.LIVE
            out = list(pubs)
            for pub in buffered:
                out.extend(await self._accept(pub))
            return CatchUp(recovered, Position(self._last, self._epoch), out)

    async def live(self, pub: Publication) -> list[Publication]:
        """A live publication arrived: what to deliver now, in order (often ``[pub]`` or ``[]``).

        Raises :class:`Unrecoverable` when a gap cannot be refilled or the epoch changed.
        """
        if self._state is _State.BUFFERING:
            if len(self._buffer) < self.max_buffer:
                self._buffer.append(pub)
            return []
        async with self._lock:
            return await self._accept(pub)

    def advance(self, pub: Publication) -> bool:
        """The common case of :meth:`live` without awaiting: True when ``pub`` is the next
        publication of a live merge (taken: deliver it); False: call :meth:`live` with it."""
        if (self._state is _State.LIVE and pub.offset == self._last + 1 and pub.epoch == self._epoch
                and not self._lock.locked()):
            self._last = pub.offset
            return True
        return False

    async def _accept(self, pub: Publication) -> list[Publication]:
        if pub.epoch != self._epoch:
            raise Unrecoverable(f"the group's history changed epoch ({self._epoch} -> {pub.epoch})")
        if pub.offset <= self._last:
            self.duplicates += 1
            return []
        if pub.offset == self._last + 1:
            self._last = pub.offset
            return [pub]
        self.refills += 1
        recovered, _top, filled = await self._read(Position(self._last, self._epoch), until=pub.offset)
        if not recovered:
            raise Unrecoverable(f"publications {self._last + 1}..{pub.offset - 1} are no longer in the history")
        out = [p for p in filled if p.offset > self._last]
        if out:
            self._last = out[-1].offset
        if pub.offset > self._last:
            # pub was appended before it reached us, so a read after it must include it; a
            # store answering otherwise lost data in between.
            raise Unrecoverable("the history does not reach a publication that arrived live")
        return out

    async def _read(self, since: Position, until: int | None) -> tuple[bool, Position, list[Publication]]:
        """History after ``since`` up to the top of the first read (or ``until``), all or nothing."""
        first = await self.store.since(self.group, since.epoch, since.offset, limit=self.page_size)
        target = first.position.offset if until is None else until
        if not first.recovered:
            return False, first.position, []
        if target - since.offset > self.max_recovery:
            return False, first.position, []
        pubs = list(first.publications)
        page = first
        while pubs and pubs[-1].offset < target and not page.complete:
            page = await self.store.since(self.group, since.epoch, pubs[-1].offset, limit=self.page_size)
            if not page.recovered:  # trimmed while we read: a partial catch-up would hide a hole
                return False, page.position, []
            pubs.extend(page.publications)
        return True, first.position, [p for p in pubs if p.offset <= max(target, first.position.offset)]
