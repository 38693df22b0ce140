"""Join and leave events of a group, coalesced per user and per interval (docs/presence.md).

A group with presence events sends each member at most one update per ``interval``: the users
who joined and the users who left since the previous one. A user who joins and leaves inside
one interval (a reload, a short reconnect) is in neither list. So N clients joining one group
cost each member about ``duration / interval`` frames, not N frames: traffic grows with N, not
N squared, in frames and in work.

The coalescer is pure asyncio and knows nothing of connections or the channel layer: the caller
feeds it the per-user transitions a :class:`~rockstar_ws.presence.store.PresenceStore` reports
(``join`` returned True: :meth:`PresenceCoalescer.joined`; ``leave`` returned True:
:meth:`PresenceCoalescer.left`) and gives it an ``emit`` callable that delivers an update.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..groups import validate_group_name
from .store import Member

__all__ = ["DEFAULT_INTERVAL", "PresenceCoalescer", "PresenceUpdate"]

logger = logging.getLogger("rockstar_ws.presence")

#: Seconds between two updates of one group. One second is short enough for "alice joined"
#: lines to feel live, and long enough for a reload (leave then join) to cancel out.
DEFAULT_INTERVAL = 1.0

_JOINED, _LEFT = "joined", "left"


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    """What changed in ``group`` during one interval: one member per user who joined (their
    first connection) and per user who left (their last). ``omitted`` counts the entries left
    out beyond the coalescer's ``max_entries`` (a client that sees it should list the group)."""

    group: str
    joined: tuple[Member, ...] = ()
    left: tuple[Member, ...] = ()
    omitted: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The update as a client may see it (no process names)."""
        data: dict[str, Any] = {"group": self.group, "joined": [m.public_dict() for m in self.joined],
                                "left": [m.public_dict() for m in self.left]}
        if self.omitted:
            data["omitted"] = self.omitted
        return data


Emit = Callable[[PresenceUpdate], Awaitable[None] | None]


@dataclass(slots=True)
class _Pending:
    # user key -> ("joined" | "left", member), in the order of the users' first change.
    changes: dict[str, tuple[str, Member]] = field(default_factory=dict)
    due: float = 0.0
    timer: asyncio.TimerHandle | None = None


class PresenceCoalescer:
    """Collects per-user joins and leaves per group and emits each group's changes at most once
    per ``interval``.

    The first change of a quiet group schedules its update ``interval`` seconds later (trailing
    edge, so that a leave followed by a join of the same user inside the interval cancels out).
    With ``autoflush`` (the default) the running loop's timers emit updates; with
    ``autoflush=False`` nothing is emitted until :meth:`flush_due` or :meth:`flush` is called,
    and ``clock`` (``time.monotonic`` by default) says what "due" means: tests drive both.

    Updates of one group are emitted in order, one at a time; an ``emit`` that raises is logged
    and does not stop later updates.
    """

    def __init__(self, emit: Emit, *, interval: float = DEFAULT_INTERVAL, autoflush: bool = True,
                 clock: Callable[[], float] = time.monotonic, max_entries: int | None = None) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise ValueError(f"interval must be a number of seconds > 0, not {interval!r}")
        if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                        or max_entries < 1):
            raise ValueError(f"max_entries must be None or an int >= 1, not {max_entries!r}")
        self.emit = emit
        self.interval = float(interval)
        self.autoflush = autoflush
        self.clock = clock
        self.max_entries = max_entries
        self._pending: dict[str, _Pending] = {}
        self._emitting: dict[str, asyncio.Task[None]] = {}
        #: Updates emitted, entries they carried, and joins cancelled by a leave (or the reverse).
        self.updates = 0
        self.entries = 0
        self.cancelled = 0

    # -- feeding ----------------------------------------------------------------------
    def joined(self, group: str, member: Member) -> None:
        """``member`` is its user's first connection in ``group`` (``store.join`` returned True)."""
        self._change(group, member, _JOINED)

    def left(self, group: str, member: Member) -> None:
        """``member`` was its user's last connection in ``group`` (``store.leave`` returned True)."""
        self._change(group, member, _LEFT)

    def _change(self, group: str, member: Member, kind: str) -> None:
        pending = self._pending.get(group)
        if pending is None:
            validate_group_name(group)
            pending = self._pending[group] = _Pending(due=self.clock() + self.interval)
            if self.autoflush:
                pending.timer = asyncio.get_running_loop().call_later(self.interval, self._fire, group)
        key = member.user_key
        before = pending.changes.get(key)
        if before is not None and before[0] != kind:
            # Joined then left (or left then came back) in one interval: nothing to tell.
            del pending.changes[key]
            self.cancelled += 1
        else:
            pending.changes[key] = (kind, member)

    # -- emitting ---------------------------------------------------------------------
    def pending(self, group: str) -> PresenceUpdate | None:
        """The update ``group`` would emit now, without emitting it (None if nothing changed)."""
        pending = self._pending.get(group)
        return self._update(group, pending) if pending is not None else None

    def _update(self, group: str, pending: _Pending) -> PresenceUpdate | None:
        joined = [m for kind, m in pending.changes.values() if kind == _JOINED]
        left = [m for kind, m in pending.changes.values() if kind == _LEFT]
        if not joined and not left:
            return None
        omitted = 0
        if self.max_entries is not None and len(joined) + len(left) > self.max_entries:
            omitted = len(joined) + len(left) - self.max_entries
            left = left[:self.max_entries]
            joined = joined[:self.max_entries - len(left)]
        return PresenceUpdate(group, tuple(joined), tuple(left), omitted)

    def _fire(self, group: str) -> None:
        self._take(group)

    def _take(self, group: str) -> tuple[PresenceUpdate, asyncio.Task[None]] | None:
        pending = self._pending.pop(group, None)
        if pending is None:
            return None
        if pending.timer is not None:
            pending.timer.cancel()
        update = self._update(group, pending)
        if update is None:
            return None
        self.updates += 1
        self.entries += len(update.joined) + len(update.left) + update.omitted
        task = asyncio.ensure_future(self._deliver(update, self._emitting.get(group)))
        self._emitting[group] = task
        def forget(done: asyncio.Task[None], group: str = group) -> None:
            if self._emitting.get(group) is done:
                self._emitting.pop(group, None)

        task.add_done_callback(forget)
        return update, task

    async def _deliver(self, update: PresenceUpdate, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.shield(previous)
        try:
            result = self.emit(update)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("presence: emitting the update of group %r failed", update.group)

    async def flush_due(self) -> list[PresenceUpdate]:
        """Emit the updates of the groups whose interval has passed by ``clock``; return them."""
        now = self.clock()
        return await self._emit_groups([g for g, p in self._pending.items() if p.due <= now])

    async def flush(self, group: str | None = None) -> list[PresenceUpdate]:
        """Emit the update of ``group`` (of every group if None) now, due or not; return them."""
        return await self._emit_groups(list(self._pending) if group is None else [group])

    async def _emit_groups(self, groups: list[str]) -> list[PresenceUpdate]:
        updates: list[PresenceUpdate] = []
        tasks: list[asyncio.Task[None]] = []
        for group in groups:
            taken = self._take(group)
            if taken is not None:
                updates.append(taken[0])
                tasks.append(taken[1])
        if tasks:
            await asyncio.gather(*tasks)
        return updates

    async def aclose(self, *, flush: bool = True) -> None:
        """Stop the timers; emit what is pending first unless ``flush`` is False."""
        if flush:
            await self.flush()
        for pending in self._pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
        self._pending.clear()
        if self._emitting:
            await asyncio.gather(*self._emitting.values(), return_exceptions=True)
