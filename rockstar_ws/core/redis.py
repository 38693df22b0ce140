"""The Redis plumbing the live registry and presence share (redis-py is imported on first use)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["close_client", "loop_task", "text", "waiting_client"]


def waiting_client(url: str, timeout: float, max_connections: int = 32) -> Any:
    """An asyncio Redis client whose pool makes a burst wait for a free connection (up to
    ``timeout`` seconds) instead of failing with ``MaxConnectionsError``, as redis-py's plain pool
    does when it runs out; every call also times out after ``timeout`` seconds."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout,
        socket_timeout=timeout, socket_connect_timeout=timeout)
    return aioredis.Redis(connection_pool=pool)


def text(value: Any) -> str:
    """A Redis reply (bytes, or str with ``decode_responses``) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def loop_task(task: asyncio.Task[None] | None, owner: asyncio.AbstractEventLoop | None,
              start: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    """``task`` while it runs on the running loop (which must be ``owner``, the loop of the
    client it uses), else a new task of ``start()``: a heartbeat survives a loop that ended."""
    if task is None or task.done() or owner is not asyncio.get_running_loop():
        return asyncio.ensure_future(start())
    return task


async def close_client(client: Any) -> None:
    """Close a client made by :func:`waiting_client`; a connection already gone is closed anyway."""
    try:
        await client.aclose()
    except Exception:
        pass
