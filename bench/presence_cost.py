"""What the Redis presence store costs: ``python -m bench.presence_cost`` (needs Redis on 127.0.0.1:6379).

Prints joins/s with many concurrent joiners (two simulated processes), and the time of
``members()`` and ``stats()`` for a group of 2,000 members. Its keys are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

URL = "redis://127.0.0.1:6379/0"


async def main(n: int = 2000, concurrency: int = 200) -> None:
    import redis

    from rockstar_ws.presence import RedisPresenceStore

    prefix = f"rockstar-presence-cost-{uuid.uuid4().hex[:8]}:"
    a = RedisPresenceStore(URL, prefix=prefix, process="cost-a:1")
    b = RedisPresenceStore(URL, prefix=prefix, process="cost-b:2")
    try:
        sem = asyncio.Semaphore(concurrency)

        async def join(i: int) -> None:
            store = a if i % 2 else b
            async with sem:
                await store.join("room", store.member(f"c{i}", user_id=f"u{i % (n // 2)}",
                                                      info={"name": f"user number {i}"}))

        started = time.perf_counter()
        await asyncio.gather(*(join(i) for i in range(n)))
        elapsed = time.perf_counter() - started
        print(f"joins: {n} in {elapsed:.2f} s = {n / elapsed:,.0f} joins/s "
              f"({concurrency} concurrent joiners, 2 processes, one group)")
        stats = await a.stats("room")
        assert stats.connections == n, stats
        for name, call in (("members()", a.members), ("stats()", a.stats)):
            times = []
            for _ in range(20):
                t0 = time.perf_counter()
                await call("room")
                times.append((time.perf_counter() - t0) * 1000)
            print(f"{name} of {n} members: median {statistics.median(times):.1f} ms, "
                  f"max {max(times):.1f} ms over 20 calls")
        t0 = time.perf_counter()
        await asyncio.gather(*(a.leave("room", f"c{i}") for i in range(1, n, 2)),
                             *(b.leave("room", f"c{i}") for i in range(0, n, 2)))
        print(f"leaves: {n / (time.perf_counter() - t0):,.0f} leaves/s")
    finally:
        await a.close()
        await b.close()
        client = redis.Redis.from_url(URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    asyncio.run(main())
