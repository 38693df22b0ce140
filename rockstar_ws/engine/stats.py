"""Counters of what the server did: connections opened, refused (by status), closed (by code)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.errors import Deny

__all__ = ["Stats"]


class Stats:
    """Process-local counters; cheap enough to bump on connect and close."""

    __slots__ = ("opened_total", "refused_total", "closed_total", "too_big_total", "rate_limited_total")

    def __init__(self) -> None:
        self.opened_total = 0
        self.refused_total: Counter[str] = Counter()
        self.closed_total: Counter[int] = Counter()
        self.too_big_total = 0
        self.rate_limited_total = 0

    def opened(self) -> None:
        """A connection was accepted."""
        self.opened_total += 1

    def refused(self, deny: Deny) -> None:
        """A handshake was refused with ``deny.status``."""
        self.refused_total[str(deny.status)] += 1

    def closed(self, code: int | None) -> None:
        """A connection ended with ``code`` (1005 when none was given)."""
        self.closed_total[int(code or 1005)] += 1

    def message_too_big(self) -> None:
        """A message over the size limit closed its connection (1009)."""
        self.too_big_total += 1

    def rate_limited(self) -> None:
        """A connection went over its message rate."""
        self.rate_limited_total += 1
