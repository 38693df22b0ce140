"""Channel layers: a channels-redis layer whose connection pool waits instead of failing under a
burst, and an in-memory layer whose receive does not grow with the number of channels.

channels-redis builds a plain redis-py ``ConnectionPool`` (100 connections): when more commands
run at once than it has connections, redis-py raises ``MaxConnectionsError: Too many
connections`` and the caller (``group_add`` in a handshake, with plain Channels) fails with HTTP 500.
This subclass uses a ``BlockingConnectionPool``: a burst waits up to ``pool_timeout`` seconds for a
free connection. Use it in ``CHANNEL_LAYERS`` exactly like ``channels_redis.core.RedisChannelLayer``::

    CHANNEL_LAYERS = {"default": {
        "BACKEND": "rockstar_ws.layers.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"], "max_connections": 100, "pool_timeout": 10},
    }}

rockstar_ws itself needs few connections per process (one node channel, at most 8 concurrent
group operations: see docs/broadcast.md); the waiting pool protects the rest of the application.

It retries a command once on a fresh connection when its connection turns out dead: after a
Redis restart every pooled connection is dead, and without a retry (redis-py's default for pools
built from a URL) each of them fails one command, e.g. one broadcast, after Redis is back.

It also sets a read timeout longer than channels-redis' blocking pop: redis-py 8 reads with a
default ``socket_timeout`` of 5 s, the same as channels-redis' ``BZPOPMIN`` timeout, so an idle
receiver fails with ``TimeoutError`` every few seconds and a message popped at that moment is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from copy import deepcopy
from typing import Any

from channels.layers import InMemoryChannelLayer as _InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer as _RedisChannelLayer
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

__all__ = ["InMemoryChannelLayer", "RedisChannelLayer", "crosses_processes"]


def crosses_processes(layer: Any) -> bool:
    """True when messages sent through ``layer`` reach other processes (not the in-memory layer)."""
    if layer is None:
        return False
    from channels.layers import InMemoryChannelLayer

    return not isinstance(layer, InMemoryChannelLayer)


class InMemoryChannelLayer(_InMemoryChannelLayer):
    """``channels.layers.InMemoryChannelLayer`` (one process) with two changes for many connections.

    * **The expiry sweep runs at most once per** ``sweep_interval`` **seconds** (1), not on every
      ``receive()`` and ``group_send()``: channels' sweep walks every channel, so N connections
      that each start a receive cost O(N²) (20,000 connections: minutes of CPU in a burst). A
      receive still never returns a message of its own channel that has expired.
    * **A channel can be attached** to a callback (:meth:`attach`): ``send()`` to it hands a copy
      of the message to the callback at once, without a queue or a task waiting in ``receive()``.
      rockstar_ws's consumer attaches each connection's channel, so an idle connection holds no
      listener task and no queue; the callback raises ``ChannelFull`` past ``capacity`` pending
      messages, as a full queue does.

    Everything else (groups, their expiry, ``flush``, capacities) is channels' own. Use it as
    ``{"BACKEND": "rockstar_ws.layers.InMemoryChannelLayer"}``.
    """

    def __init__(self, *args: Any, sweep_interval: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sweep_interval = sweep_interval
        self._swept = float("-inf")
        self._attached: dict[str, Callable[[dict[str, Any]], None]] = {}

    def attach(self, channel: str, deliver: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Deliver every message sent to ``channel`` by calling ``deliver(message)`` (a copy, in the
        sender's task; it must not block). Returns the function that detaches it again."""
        self.require_valid_channel_name(channel)
        self._attached[channel] = deliver

        def detach() -> None:
            if self._attached.get(channel) is deliver:
                del self._attached[channel]
        return detach

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``: to its attached callback, else onto its queue."""
        deliver = self._attached.get(channel)
        if deliver is None:
            await super().send(channel, message)
            return
        assert isinstance(message, dict), "message is not a dict"
        assert "__asgi_channel__" not in message
        deliver(deepcopy(message))

    async def receive(self, channel: str) -> Any:
        """The first message of ``channel`` (its expired ones dropped first, as channels does)."""
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        now = time.time()
        while not queue.empty() and queue._queue[0][0] < now:
            queue.get_nowait()
            self._remove_from_groups(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        return message

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept < self.sweep_interval:
            return
        self._swept = now
        super()._clean_expired()


class RedisChannelLayer(_RedisChannelLayer):
    """``channels_redis.core.RedisChannelLayer`` with a blocking, bounded connection pool per host."""

    def __init__(self, *args: Any, max_connections: int = 100, pool_timeout: float = 10.0,
                 socket_timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        if socket_timeout <= self.brpop_timeout:
            raise ValueError(f"socket_timeout must be longer than the blocking pop ({self.brpop_timeout}s)")
        self.socket_timeout = socket_timeout

    def create_pool(self, index: int) -> Any:
        host = dict(self.hosts[index])
        if "master_name" in host:  # Sentinel: keep channels-redis' own pool
            return super().create_pool(index)
        host.setdefault("max_connections", self.max_connections)
        host.setdefault("timeout", self.pool_timeout)
        host.setdefault("socket_timeout", self.socket_timeout)
        host.setdefault("socket_connect_timeout", 5.0)
        host.setdefault("retry", Retry(ExponentialBackoff(cap=0.5, base=0.05), 1))
        if "address" in host:
            return aioredis.BlockingConnectionPool.from_url(host.pop("address"), **host)
        return aioredis.BlockingConnectionPool(**host)
