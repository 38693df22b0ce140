"""One account of a Redis outage per process: one WARNING when it starts, one INFO when it ends.

The channel layer (groups, tenant changes, per-connection channels) and the live registry all
reach Redis, and each retries on its own schedule. Each failure is reported here instead of being
logged where it happens: the first one of an outage is the WARNING, the rest are counted (DEBUG
only), and the INFO line on recovery says how long it lasted and what it cost (broadcasts that
stayed in this process, failed calls). Subsystems that find out on their own when Redis is back
(the group hub's upkeep, the registry's heartbeat) *hold* the outage open until they report
recovery; a one-off failure (a read of member counts, a blocking receive) only counts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

__all__ = ["Outage", "outage"]

logger = logging.getLogger("rockstar_ws.outage")


class Outage:
    """This process's view of whether Redis answers (used from the event loop's thread)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.failing: set[str] = set()
        self.errors = 0
        self.costs: Counter[str] = Counter()

    @property
    def active(self) -> bool:
        """True between the first failure of an outage and its recovery."""
        return self.since is not None

    def failed(self, subsystem: str, what: str, exc: BaseException, *, holds: bool = True,
               log: logging.Logger | None = None) -> bool:
        """Record a failure of ``subsystem`` while doing ``what``; True when it starts an outage
        (then it is logged as the outage's one WARNING on ``log``)."""
        self.errors += 1
        if holds:
            self.failing.add(subsystem)
        if self.since is not None:
            logger.debug("%s still failing while %s: %r", subsystem, what, exc)
            return False
        self.since = time.monotonic()
        (log or logger).warning(
            "Redis unreachable (%s, while %s: %r): connections stay open, broadcasts and counts stay in "
            "this process until it answers; one line follows on recovery", subsystem, what, exc)
        return True

    def count(self, cost: str, n: int = 1) -> None:
        """Add ``n`` to what the outage cost (e.g. broadcasts that did not leave this process)."""
        self.costs[cost] += n

    def recovered(self, subsystem: str, log: logging.Logger | None = None) -> None:
        """``subsystem`` works again; the outage ends when no holding subsystem still fails."""
        self.failing.discard(subsystem)
        if self.since is None or self.failing:
            return
        costs = ", ".join(f"{n} {cost}" for cost, n in sorted(self.costs.items())) or "nothing lost"
        (log or logger).info("Redis answers again after %.1fs (%d failed calls; %s)",
                             time.monotonic() - self.since, self.errors, costs)
        self.reset()

    def reset(self) -> None:
        """Forget the current outage (tests)."""
        self.since = None
        self.failing.clear()
        self.errors = 0
        self.costs.clear()


#: The process's one outage tracker.
outage = Outage()
