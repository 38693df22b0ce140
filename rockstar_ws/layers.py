"""A channels-redis layer whose connection pool waits instead of failing under a burst.

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

from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

__all__ = ["RedisChannelLayer", "crosses_processes"]


def crosses_processes(layer: Any) -> bool:
    """True when messages sent through ``layer`` reach other processes (not the in-memory layer)."""
    if layer is None:
        return False
    from channels.layers import InMemoryChannelLayer

    return not isinstance(layer, InMemoryChannelLayer)



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
