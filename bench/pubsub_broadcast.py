"""Broadcast capacity with history on against off: ``python bench/pubsub_broadcast.py [REDIS_URL]``.

One daphne process on Redis, ``--subscribers`` clients subscribed to a group with history
(``news``: appended to a Redis stream first) and to one without (``plain.bench``), both on the
same pub/sub route, so the only difference is the history. ``--window`` publisher connections
publish at once (each awaiting its replies); the figure is deliveries per second until every subscriber has
every publication. The two cases alternate (``--rounds``), off then on in odd rounds and on then
off in even ones, so a drift of the machine (or of the server: warm-up, memory) within a round
counts against each case as often; one unmeasured warm-up of both comes first. The figure is the
median of the rounds' on / off ratios. With Redis, the history's scripts per case (``EVALSHA``
calls, from ``INFO commandstats``, less those of the off case: Redis counts every client's)
give the mean batch: publications per append script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from pubsub_common import cleanup, server_env, start

from tests.pubsub_client import open_client


def server_cpu(server) -> float:
    """CPU seconds (user + system) the server process has used so far."""
    import psutil

    t = psutil.Process(server.proc.pid).cpu_times()
    return t.user + t.system


def evalsha_calls(redis_url: str | None) -> int:
    """``EVALSHA`` calls Redis has run so far (the history's appends are ``EVALSHA``; channels-redis's
    ``group_send`` is ``EVAL``); None: no Redis, 0."""
    if not redis_url:
        return 0
    import redis

    stats = redis.Redis.from_url(redis_url).info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


Case = tuple[float, float, float, float, int]


async def one_case(server, group: str, subscribers: int, n: int, window: int,
                   redis_url: str | None = None) -> Case:
    """(deliveries per second, deliveries per second of server CPU, server CPU share, client CPU
    share, scripts Redis ran) of one case; a share is of one core over the case's wall time."""
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
            scripts0 = evalsha_calls(redis_url)
            t0, cpu0, own0 = time.perf_counter(), server_cpu(server), time.process_time()

            async def publisher(p, count: int) -> None:
                for _ in range(count):
                    r = await p.command("publish", group=group, data=payload)
                    assert "result" in r, r

            await asyncio.gather(*(publisher(p, n // window) for p in publishers))
            for s in subs:
                await s.wait_for(lambda s=s: len(s.pubs(group)) >= n // window * window, deadline=300)
            took, cpu, own = time.perf_counter() - t0, server_cpu(server) - cpu0, time.process_time() - own0
            scripts = evalsha_calls(redis_url) - scripts0
        finally:
            for p in pubs:
                await p.__aexit__(None, None, None)
        return subscribers * n / took, subscribers * n / max(cpu, 1e-3), cpu / took, own / took, scripts
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the rounds on one server; the figures as a dict (what ``--json`` writes)."""
    env = server_env("" if args.embedded else args.redis)
    server = start(env)
    redis_url = None if args.embedded else args.redis
    cases = {"off": "plain.bench", "on": "news"}
    wanted = [c for c in args.cases.split(",") if c]
    results: dict[str, list[Case]] = {c: [] for c in wanted}
    try:
        for name in wanted:  # warm-up, not counted: first subscriptions, the script's first load
            await one_case(server, cases[name], args.subscribers, max(args.window, args.publications // 10),
                           args.window, redis_url)
        for i in range(args.rounds):
            # Odd rounds off then on, even rounds on then off: drift within a round cancels.
            order = wanted if i % 2 == 0 else wanted[::-1]
            for name in order:
                results[name].append(await one_case(server, cases[name], args.subscribers, args.publications,
                                                    args.window, redis_url))
            print(f"round {i + 1} ({', '.join(order)}): " + ", ".join(
                f"{name} {r[0]:,.0f} deliveries/s ({r[1]:,.0f} per server CPU-s, server CPU {r[2]:.0%}, "
                f"client CPU {r[3]:.0%}" + (f", {r[4]} scripts" if redis_url else "") + ")"
                for name in wanted for r in (results[name][-1],)), flush=True)
    finally:
        server.stop()
        if not args.embedded:
            cleanup(args.redis, env)
    out: dict[str, Any] = {"store": "memory" if args.embedded else "redis", "subscribers": args.subscribers,
                           "publications": args.publications, "window": args.window, "rounds": args.rounds,
                           "order": "alternating"}
    for name, rs in results.items():
        out[name] = statistics.median(r[0] for r in rs)
        out[f"{name}_per_cpu"] = statistics.median(r[1] for r in rs)
        out[f"server_cpu_{name}"] = statistics.median(r[2] for r in rs)
        out[f"client_cpu_{name}"] = statistics.median(r[3] for r in rs)
        out[f"all_{name}"] = [round(r[0]) for r in rs]
        if redis_url:
            out[f"scripts_{name}"] = statistics.median(r[4] for r in rs)
    if "on" in results and "off" in results:
        on, off = results["on"], results["off"]
        # Each round ran both cases seconds apart: the median of the per-round ratios is steadier
        # than the ratio of the medians when the machine's load drifts.
        ratios = [x[0] / y[0] for x, y in zip(on, off, strict=True)]
        cpu_ratios = [x[1] / y[1] for x, y in zip(on, off, strict=True)]
        out["ratio"] = statistics.median(ratios)
        out["ratio_per_cpu"] = statistics.median(cpu_ratios)
        out["spread"] = [round(min(ratios), 3), round(max(ratios), 3)]
        out["all_ratios"] = [round(x, 3) for x in ratios]
        out["all_cpu_ratios"] = [round(x, 3) for x in cpu_ratios]
        # Redis counts every client's scripts: the off case's count (no history) is the background.
        if redis_url and out["scripts_on"] > out["scripts_off"]:
            out["batch_on"] = args.publications / (out["scripts_on"] - out["scripts_off"])
    return out


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("redis", nargs="?", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--publications", type=int, default=1000)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cases", default="off,on",
                    help="the cases each round runs: off,on (default), or one of them alone (to profile the server)")
    ap.add_argument("--embedded", action="store_true",
                    help="no Redis: the in-memory channel layer and history (one process, embedded mode)")
    ap.add_argument("--json", help="also write the figures to this file (bench/run.py reads it)")
    return ap.parse_args(argv)


def main() -> None:
    args = arguments()
    r = asyncio.run(measure(args))
    if "ratio" in r:
        batch = f"; {r['batch_on']:.1f} publications per append script" if "batch_on" in r else ""
        print(f"median: off {r['off']:,.0f}/s, on {r['on']:,.0f}/s, history on = {r['ratio']:.2f} of off "
              f"(rounds {r['spread'][0]:.2f}-{r['spread'][1]:.2f}; {r['ratio_per_cpu']:.2f} per server "
              f"CPU-second){batch}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
