"""The one retry backoff of rockstar_ws: what every loop on the channel layer waits between failures."""

from __future__ import annotations

import asyncio

__all__ = ["Backoff"]


class Backoff:
    """Exponential backoff: ``await backoff.sleep()`` after a failure waits ``first`` seconds, then
    twice as long each time up to ``cap``; ``reset()`` after a success starts again at ``first``.

    The defaults (0.2 s to 2 s) keep a loop that waits for a restarted Redis responsive without
    hammering it: one try per 2 s per loop once the outage lasts.
    """

    __slots__ = ("cap", "delay", "first")

    def __init__(self, first: float = 0.2, cap: float = 2.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    async def sleep(self) -> None:
        """Wait the current delay, then lengthen it."""
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.cap)

    def reset(self) -> None:
        """A success: the next failure waits ``first`` again."""
        self.delay = self.first
