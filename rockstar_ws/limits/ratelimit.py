"""Rate limits: a token bucket per connection for messages, and one per client IP for handshakes.

Both are plain monotonic-clock arithmetic: no task, no timer, nothing to clean up per message.
The handshake limiter is **per process**: with N daphne processes behind a balancer one IP may
open N times ``HANDSHAKE_BURST`` at once. A cluster-wide limit needs a shared store (Redis).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..core.errors import Deny

__all__ = ["HandshakeRateLimiter", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second into a bucket of ``burst`` tokens; each event takes one.

    A full bucket lets ``burst`` events through at once; after that, ``rate`` a second.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("TokenBucket rate must be > 0")
        self.rate = float(rate)
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.stamp = time.monotonic() if now is None else now

    def allow(self, now: float | None = None) -> bool:
        """Take a token if there is one: True when the event may happen."""
        if now is None:
            now = time.monotonic()
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False

    def retry_after(self) -> float:
        """Seconds until the next token (0 when one is there)."""
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def full(self, now: float) -> bool:
        """True when the bucket has refilled completely (it can be forgotten)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class HandshakeRateLimiter:
    """New handshakes per client IP, per process: over the limit, ``Deny(429)``.

    Buckets of IPs that have refilled are forgotten every ``prune_every`` checks, so memory
    follows the number of IPs active in the last ``burst / rate`` seconds.
    """

    def __init__(self, rate: float, burst: int, exempt: Iterable[str] = (), prune_every: int = 1024) -> None:
        self.rate = float(rate)
        self.burst = int(burst)
        self.exempt = frozenset(exempt)
        self.buckets: dict[str, TokenBucket] = {}
        self._prune_every = prune_every
        self._checks = 0

    def built_from(self, rate: float, burst: int, exempt: Iterable[str]) -> bool:
        """True when this limiter has these settings (the server rebuilds it when they change)."""
        return (self.rate, self.burst, self.exempt) == (float(rate), int(burst), frozenset(exempt))

    def check(self, ip: str) -> None:
        """Count one handshake from ``ip``; raise ``Deny(429)`` when it is over the limit."""
        if ip in self.exempt:
            return
        now = time.monotonic()
        self._checks += 1
        if self._checks >= self._prune_every:
            self._checks = 0
            self.prune(now)
        bucket = self.buckets.get(ip)
        if bucket is None:
            bucket = self.buckets[ip] = TokenBucket(self.rate, self.burst, now)
        if not bucket.allow(now):
            raise Deny(429, "too many handshakes",
                       log_detail=f"more than {self.burst} handshakes at once or {self.rate:g}/s from {ip}")

    def prune(self, now: float | None = None) -> None:
        """Forget the buckets that have refilled."""
        now = time.monotonic() if now is None else now
        for ip in [ip for ip, b in self.buckets.items() if b.full(now)]:
            del self.buckets[ip]
