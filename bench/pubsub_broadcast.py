"""Broadcast capacity with history on against off: ``python bench/pubsub_broadcast.py [REDIS_URL]``.

One daphne process on Redis, ``--subscribers`` clients subscribed to a group with history
(``news``: appended to a Redis stream first) and to one without (``plain.bench``), both on the
same pub/sub route, so the only difference is the history. ``--window`` publisher connections
publish at once (each awaiting its replies); the figure is deliveries per second until every subscriber has
every publication. The two cases alternate (``--rounds``) so drift on a shared machine hits
both; the ratio of the medians is the cost of the history.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from pubsub_common import cleanup, server_env, start

from tests.pubsub_client import open_client


async def one_case(server, group: str, subscribers: int, n: int, window: int) -> float:
    clients = [open_client(server) for _ in range(subscribers)]
    subs = [await c.__aenter__() for c in clients]
    try:
        for s in subs:
            assert "result" in await s.subscribe(group)
        # A connection's commands run one after the other (a publish waits for its append), so
        # several publisher connections keep appends in flight at once, as several app processes would.
        pubs = [open_client(server) for _ in range(window)]
        publishers = [await p.__aenter__() for p in pubs]
        try:
            payload = {"text": "x" * 100}
            t0 = time.perf_counter()

            async def publisher(p, count: int) -> None:
                for _ in range(count):
                    r = await p.command("publish", group=group, data=payload)
                    assert "result" in r, r

            await asyncio.gather(*(publisher(p, n // window) for p in publishers))
            for s in subs:
                await s.wait_for(lambda s=s: len(s.pubs(group)) >= n // window * window, deadline=300)
            took = time.perf_counter() - t0
        finally:
            for p in pubs:
                await p.__aexit__(None, None, None)
        return subscribers * n / took
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("redis", nargs="?", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--publications", type=int, default=1000)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    env = server_env(args.redis)
    server = start(env)
    on: list[float] = []
    off: list[float] = []
    try:
        for i in range(args.rounds):
            off.append(await one_case(server, "plain.bench", args.subscribers, args.publications, args.window))
            on.append(await one_case(server, "news", args.subscribers, args.publications, args.window))
            print(f"round {i + 1}: history off {off[-1]:,.0f} deliveries/s, on {on[-1]:,.0f} deliveries/s")
        ratio = statistics.median(on) / statistics.median(off)
        print(f"median: off {statistics.median(off):,.0f}/s, on {statistics.median(on):,.0f}/s, "
              f"history on = {ratio:.2f} of off")
    finally:
        server.stop()
        cleanup(args.redis, env)


if __name__ == "__main__":
    asyncio.run(main())
