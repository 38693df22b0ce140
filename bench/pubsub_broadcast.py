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


async def one_case(server, group: str, subscribers: int, n: int, window: int) -> tuple[float, float, float, float]:
    """(deliveries per second, deliveries per second of server CPU, server CPU share, client CPU
    share) of one case; a share is of one core over the case's wall time."""
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
            t0, cpu0, own0 = time.perf_counter(), server_cpu(server), time.process_time()

            async def publisher(p, count: int) -> None:
                for _ in range(count):
                    r = await p.command("publish", group=group, data=payload)
                    assert "result" in r, r

            await asyncio.gather(*(publisher(p, n // window) for p in publishers))
            for s in subs:
                await s.wait_for(lambda s=s: len(s.pubs(group)) >= n // window * window, deadline=300)
            took, cpu, own = time.perf_counter() - t0, server_cpu(server) - cpu0, time.process_time() - own0
        finally:
            for p in pubs:
                await p.__aexit__(None, None, None)
        return subscribers * n / took, subscribers * n / max(cpu, 1e-3), cpu / took, own / took
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the rounds on one server; the figures as a dict (what ``--json`` writes)."""
    env = server_env("" if args.embedded else args.redis)
    server = start(env)
    on: list[tuple[float, float, float, float]] = []
    off: list[tuple[float, float, float, float]] = []
    try:
        for i in range(args.rounds):
            off.append(await one_case(server, "plain.bench", args.subscribers, args.publications, args.window))
            on.append(await one_case(server, "news", args.subscribers, args.publications, args.window))
            print(f"round {i + 1}: " + ", ".join(
                f"{name} {r[0]:,.0f} deliveries/s ({r[1]:,.0f} per server CPU-s, server CPU {r[2]:.0%}, "
                f"client CPU {r[3]:.0%})" for name, r in (("history off", off[-1]), ("on", on[-1]))), flush=True)
    finally:
        server.stop()
        if not args.embedded:
            cleanup(args.redis, env)
    # Each round ran both cases seconds apart: the median of the per-round ratios is steadier
    # than the ratio of the medians when the machine's load drifts.
    ratios = [x[0] / y[0] for x, y in zip(on, off, strict=True)]
    cpu_ratios = [x[1] / y[1] for x, y in zip(on, off, strict=True)]
    return {"store": "memory" if args.embedded else "redis", "subscribers": args.subscribers,
            "publications": args.publications, "window": args.window, "rounds": args.rounds,
            "off": statistics.median(r[0] for r in off), "on": statistics.median(r[0] for r in on),
            "off_per_cpu": statistics.median(r[1] for r in off), "on_per_cpu": statistics.median(r[1] for r in on),
            "server_cpu_off": statistics.median(r[2] for r in off),
            "server_cpu_on": statistics.median(r[2] for r in on),
            "client_cpu_off": statistics.median(r[3] for r in off),
            "client_cpu_on": statistics.median(r[3] for r in on),
            "all_off": [round(r[0]) for r in off], "all_on": [round(r[0]) for r in on],
            "ratio": statistics.median(ratios), "ratio_per_cpu": statistics.median(cpu_ratios)}


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("redis", nargs="?", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--publications", type=int, default=1000)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--embedded", action="store_true",
                    help="no Redis: the in-memory channel layer and history (one process, embedded mode)")
    ap.add_argument("--json", help="also write the figures to this file (bench/run.py reads it)")
    return ap.parse_args(argv)


def main() -> None:
    args = arguments()
    r = asyncio.run(measure(args))
    print(f"median: off {r['off']:,.0f}/s, on {r['on']:,.0f}/s, history on = {r['ratio']:.2f} of off "
          f"({r['ratio_per_cpu']:.2f} per server CPU-second)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
