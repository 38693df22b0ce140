"""Per-connection protection: the message rate, the idle timeout, and the write limits.

One :class:`ConnectionGuard` per connection when any of them is on (the default), built from
the connection's effective upgrader (route over server over settings). The consumer's pump calls
``guard.allow()`` per client message; ``WebSocketConnection.write_message`` sends through
``guard.send()``. Neither starts a task: the idle timeout is one ``loop.call_later`` handle that
re-arms itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.errors import ConnectionClosed
from ..core.messages import CloseCode
from .ratelimit import TokenBucket
from .slow import SLOW_CLIENT_CODE, close_slow_client

if TYPE_CHECKING:
    from ..core.connection import WebSocketConnection
    from ..servers.bridges import ServerBridge
    from .upgrader import Upgrader

__all__ = ["IDLE_TIMEOUT_CODE", "RATE_LIMIT_CODES", "ConnectionGuard", "new_guard"]

logger = logging.getLogger("rockstar_ws")
_monotonic = time.monotonic


def _task_getter(loop: asyncio.AbstractEventLoop) -> Callable[[], asyncio.Task[Any] | None]:
    """``asyncio.current_task`` for ``loop``, cheap enough for every write. On Python 3.11 it is
    written in Python (250 ns: it looks the running loop up first); its answer is the entry of
    the C module's ``_current_tasks`` for the loop, read here directly (35 ns). 3.12 made
    ``current_task`` itself C."""
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if sys.version_info < (3, 12) and isinstance(tasks, dict):
        return functools.partial(tasks.get, loop)
    return asyncio.current_task

#: Close code of the idle timeout: 4000 + HTTP 408 (Request Timeout), in the family of 4429.
IDLE_TIMEOUT_CODE = CloseCode.IDLE_TIMEOUT
#: Close codes of the rate-limit policies that close.
RATE_LIMIT_CODES = {"close": CloseCode.POLICY_VIOLATION, "close-4429": CloseCode.TOO_MANY_REQUESTS}


class ConnectionGuard:
    """Rate limit, idle timer and write limits of one connection."""

    __slots__ = ("conn", "bucket", "policy", "idle", "last", "timer", "warned_at", "dropped",
                 "write_timeout", "buffer_limit", "bridge", "_blocking_send", "_closing", "_write_started",
                 "_writer", "_write_timer", "_write_expired", "_send", "write_ready", "_current_task")

    def __init__(self, conn: WebSocketConnection, upgrader: Upgrader, bridge: ServerBridge) -> None:
        self.conn = conn
        rate = upgrader.message_rate or 0
        self.bucket = TokenBucket(rate, upgrader.message_burst or 1) if rate > 0 else None
        self.policy = upgrader.rate_limit_policy or "close"
        self.idle = float(upgrader.idle_timeout or 0)
        self.last = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.warned_at = 0.0
        self.dropped = 0
        self.bridge = bridge
        self._closing: asyncio.Future[None] | None = None
        # daphne's send never blocks (it buffers): the byte limit guards it. Other servers' send
        # blocks on a client that does not read: the timeout guards them, and the byte limit too
        # where the bridge can see the server's buffer (uvicorn's transport).
        self._blocking_send = bridge.name != "daphne"
        self.write_timeout = float(upgrader.write_timeout or 0) if self._blocking_send else 0.0
        self.buffer_limit = int(upgrader.write_buffer_limit or 0)
        self._write_started = 0.0
        self._writer: asyncio.Task[Any] | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._write_expired = False
        #: The server's send, unguarded (looked up once: this is the hot path of every write).
        self._send = conn.send_raw
        self._current_task = _task_getter(asyncio.get_running_loop())
        #: True when a write may skip :meth:`send` (no wait possible, under the byte limit):
        #: WebSocketConnection.write_message then sends straight away.
        self.write_ready: Callable[[], bool] = (
            _always if not self.write_timeout and not self.buffer_limit
            else bridge.write_ready(self.buffer_limit) or _never)

    @property
    def watches_messages(self) -> bool:
        """True when the pump must call :meth:`allow` per message (rate limit or idle timeout)."""
        return self.bucket is not None or self.idle > 0

    # -- client messages (the pump) ------------------------------------------------------
    def allow(self) -> bool:
        """One client message arrived: note the time; False when it is over the rate."""
        now = self.last = time.monotonic()
        bucket = self.bucket
        return bucket is None or bucket.allow(now)

    async def rate_limited(self) -> bool:
        """Apply the policy to a message over the rate; True: drop the message."""
        code = RATE_LIMIT_CODES.get(self.policy)
        conn = self.conn
        if code is not None:
            logger.info("closing %s: over its message rate (%s)", conn, self.policy)
            await conn.close(code, "rate limit exceeded")
            return True
        self.dropped += 1
        now = time.monotonic()
        if now - self.warned_at >= 1.0:
            self.warned_at = now
            warning = {"error": "rate_limited", "dropped": self.dropped,
                       "retry_after": round(self.bucket.retry_after(), 3) if self.bucket else 0}
            try:
                await conn.write_message(1, json.dumps(warning, separators=(",", ":")))
            except ConnectionClosed:
                pass
        return True

    # -- idle timeout --------------------------------------------------------------------
    def start(self) -> None:
        """Arm the idle timer (when an idle timeout is set)."""
        if self.idle > 0:
            self.timer = asyncio.get_running_loop().call_later(self.idle, self._check_idle)
            self.conn.on_close(self.stop)

    def stop(self, _conn: Any = None) -> None:
        """Disarm the idle timer."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check_idle(self) -> None:
        conn = self.conn
        if conn.closed:
            return
        quiet = time.monotonic() - self.last
        if quiet >= self.idle:
            self.timer = None
            logger.info("closing %s: no message for %.1fs (idle timeout)", conn, quiet)
            self._closing = asyncio.ensure_future(conn.close(IDLE_TIMEOUT_CODE, "idle timeout"))
        else:
            self.timer = asyncio.get_running_loop().call_later(self.idle - quiet, self._check_idle)

    # -- writes --------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        """Send ``message``, failing (close 1013, ``ConnectionClosed``) for a client that does not read."""
        limit = self.buffer_limit
        if limit and self.bridge.buffered_bytes() > limit:
            await self._fail(f"more than {limit} bytes unsent")
        send = self._send
        if not self.write_timeout:
            await send(message)
            return
        # A timer per write (asyncio.timeout) costs ~9 us; instead one watchdog per connection
        # looks at the write in progress once per WRITE_TIMEOUT and re-arms itself.
        self._write_started = _monotonic()
        self._writer = self._current_task()
        if self._write_timer is None:
            self._write_timer = asyncio.get_running_loop().call_later(self.write_timeout, self._watch_write)
        try:
            await send(message)
        except asyncio.CancelledError:
            if not self._write_expired:
                raise
            self._writer.uncancel()  # type: ignore[union-attr]
            await self._fail(f"a write waited {self.write_timeout:g}s")
        finally:
            self._write_started = 0.0

    def _watch_write(self) -> None:
        started = self._write_started
        if not started or self.conn.closed:
            self._write_timer = None
            return
        waited = time.monotonic() - started
        if waited < self.write_timeout:
            self._write_timer = asyncio.get_running_loop().call_later(self.write_timeout - waited, self._watch_write)
            return
        self._write_timer = None
        if self._writer is not None and not self._writer.done():
            self._write_expired = True
            self._writer.cancel()

    async def _fail(self, why: str) -> None:
        conn = self.conn
        logger.warning("closing %s: the client does not read (%s)", conn, why)
        sending = close_slow_client(conn, "client too slow")
        if sending is not None:
            await sending
        raise ConnectionClosed(SLOW_CLIENT_CODE, "client too slow")


def _always() -> bool:
    return True


def _never() -> bool:
    return False


def new_guard(conn: WebSocketConnection, upgrader: Upgrader, bridge: ServerBridge) -> ConnectionGuard | None:
    """The guard of a connection, or None when every per-connection limit is off."""
    if not (upgrader.message_rate or upgrader.idle_timeout or upgrader.write_timeout
            or upgrader.write_buffer_limit):
        return None
    return ConnectionGuard(conn, upgrader, bridge)
