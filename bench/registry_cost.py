"""What the registry costs per connection (admission plus release), without a server:
``python -m bench.registry_cost`` (needs Redis on 127.0.0.1:6379 for the cluster figure).

The per-message path does no registry work, so this per-connection figure is the whole cost.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid


async def _per_connection(registry, n: int) -> float:
    from rockstar_ws import WebSocketServer
    from tests.unit.test_registry import _ctx

    server = WebSocketServer(name="cost")
    ctxs = [_ctx(server, f"10.0.{i % 250}.{i % 7}:1") for i in range(n)]
    started = time.perf_counter()
    for ctx in ctxs:
        release = await registry.admit(ctx)
        await release()
    return (time.perf_counter() - started) / n * 1e6


async def main() -> None:
    from rockstar_ws.registry import LocalRegistry, RedisRegistry

    local = min([await _per_connection(LocalRegistry("cost:1"), 20000) for _ in range(3)])
    print(f"in-process registry: {local:.1f} µs per connection (admit + release)")
    prefix = f"rockstar-cost-{uuid.uuid4().hex[:8]}:"
    redis_registry = RedisRegistry("redis://127.0.0.1:6379/0", prefix=prefix)
    try:
        cluster = min([await _per_connection(redis_registry, 2000) for _ in range(3)])
        print(f"Redis registry:      {cluster:.1f} µs per connection (admit + release, two round trips)")
    finally:
        await redis_registry.close()
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    asyncio.run(main())
