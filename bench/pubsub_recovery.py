"""Recovery of 1,000 missed publications: ``python bench/pubsub_recovery.py [REDIS_URL] [--runs 3]``.

A client subscribes to ``news`` on a daphne process (history in Redis), leaves, 1,000
publications are made with ``manage.py ws_publish --count 1000``, and the client subscribes
again with ``since``: the figure is the time from sending that subscribe to receiving the
1,000th publication (reply, catch-up read in pages of 500, 1,000 frames written). Prints one
line per run and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pubsub_common import ROOT, cleanup, server_env, start

from tests.pubsub_client import open_client


async def one_run(server, env) -> float:
    async with open_client(server) as c:
        top = (await c.subscribe("news"))["result"]
    command = [sys.executable, str(ROOT / "manage.py"), "ws_publish", "news", json.dumps({"n": "x" * 100}),
               "--count", "1000"]
    await asyncio.to_thread(subprocess.run, command, cwd=ROOT, env=env, check=True, capture_output=True,
                            timeout=300)
    async with open_client(server) as c:
        t0 = time.perf_counter()
        reply = await c.subscribe("news", since={"epoch": top["epoch"], "offset": top["offset"]})
        assert reply["result"]["recovered"] is True and reply["result"]["catchup"] == 1000, reply
        await c.wait_for(lambda: len(c.pubs()) >= 1000)
        took = time.perf_counter() - t0
        offsets = [p["offset"] for p in c.pubs()]
        assert offsets == list(range(top["offset"] + 1, top["offset"] + 1001))
    return took


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The runs on one server; the figures as a dict (what ``--json`` writes)."""
    env = server_env(args.redis)
    server = start(env)
    try:
        times = []
        for i in range(args.runs):
            times.append(await one_run(server, env))
            print(f"run {i + 1}: 1,000 missed publications recovered in {times[-1] * 1000:.0f} ms", flush=True)
    finally:
        server.stop()
        cleanup(args.redis, env)
    return {"missed": 1000, "runs": args.runs, "all_ms": [round(t * 1000, 1) for t in times],
            "median_ms": round(statistics.median(times) * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("redis", nargs="?", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="also write the figures to this file (bench/run.py reads it)")
    args = ap.parse_args()
    r = asyncio.run(measure(args))
    print(f"median: {r['median_ms']:.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
