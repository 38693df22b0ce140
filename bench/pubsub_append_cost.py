"""What one history append costs in Redis: ``python -m bench.pubsub_append_cost [REDIS_URL]``.

Prints appends/s for one publisher awaiting each append (one round trip each), then for
several publishers with appends in flight at once (redis-py pipelines them over the pool's
connections), next to plain ``PUBLISH`` under the same load, which is what a broadcast costs
Redis today. Keys live under a prefix of the run and are deleted at the end.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

from redis import asyncio as aioredis

from rockstar_ws.pubsub.history import RedisHistoryStore


async def rate(n: int, concurrency: int, op) -> float:
    """Operations per second with ``concurrency`` callers, ``n`` operations in all."""
    per = n // concurrency

    async def caller(c: int) -> None:
        for i in range(per):
            await op(c, i)

    start = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(concurrency)))
    return per * concurrency / (time.perf_counter() - start)


async def redis_usec(client: aioredis.Redis, command: str) -> tuple[int, int]:
    """(calls, microseconds) Redis spent in ``command`` so far (INFO commandstats; never reset)."""
    stats = await client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}", {"calls": 0, "usec": 0})
    return int(entry["calls"]), int(entry["usec"])


async def main(url: str) -> None:
    prefix = f"rockstar_ws:bench:history:{uuid.uuid4().hex[:8]}:"
    store = RedisHistoryStore(url, key_prefix=prefix)
    plain = aioredis.Redis.from_url(url)
    payload = "x" * 200
    try:
        print("case | ops/s")
        print("--- | ---")
        for conc in (1, 16, 64):
            n = 3000 if conc == 1 else 20000
            r = await rate(n, conc, lambda c, i: store.append(f"g{c % 4}", payload, size=1000, ttl=300))
            print(f"history append, {conc} publisher(s), 4 groups | {r:,.0f}")
            p = await rate(n, conc, lambda c, i: plain.publish(f"{prefix}chan", payload))
            print(f"plain PUBLISH, {conc} publisher(s) | {p:,.0f}")
        # Redis's own time per call (other clients' scripts add noise to evalsha; small here).
        for command, op in (("evalsha", lambda c, i: store.append("g", payload, size=1000, ttl=300)),
                            ("publish", lambda c, i: plain.publish(f"{prefix}chan", payload))):
            calls0, usec0 = await redis_usec(plain, command)
            await rate(5000, 16, op)
            calls1, usec1 = await redis_usec(plain, command)
            print(f"Redis time per {command} | {(usec1 - usec0) / max(1, calls1 - calls0):.1f} us")
    finally:
        keys = [k async for k in plain.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await plain.delete(*keys)
        await plain.aclose()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"))
