"""Quick local measurement: p99 delivery latency of a broadcast to 200 receivers on daphne with Redis.

    python -m bench.broadcast_latency [--receivers 200] [--messages 100] [--interval 0.02]
                                      [--processes 1] [--redis redis://127.0.0.1:6379/0]

Starts ``--processes`` daphne processes of the demo project sharing Redis (a fresh channels-redis
prefix), connects the receivers to ``/ws/chat`` (the demo chat room, spread over the processes),
and one sender to the first process, which sends ``--messages`` messages ``--interval`` seconds
apart. Each message carries its send time; every receiver records its arrival. Prints deliveries,
losses, duplicates, p50/p99/max latency and deliveries per second. Receivers and sender share
this one client process, so on a small machine the client adds to the figure. The benchmark
(bench/) compares the same load against plain Channels ``group_send``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from websockets.asyncio.client import connect

from tests.servers import ROOT, ServerProcess


async def measure(urls: list[str], receivers: int, messages: int, interval: float) -> dict[str, float]:
    got: list[list[float]] = [[] for _ in range(receivers)]
    seen: list[dict[int, int]] = [{} for _ in range(receivers)]
    conns = []
    for i in range(receivers):
        conns.append(await connect(f"{urls[i % len(urls)]}/ws/chat", open_timeout=30, max_size=None))
    sender = await connect(f"{urls[0]}/ws/chat", open_timeout=30)
    await asyncio.sleep(1.0)  # let member counts and layer memberships settle

    async def reader(i: int, ws) -> None:
        async for raw in ws:
            now = time.time()
            m = json.loads(raw)
            seen[i][m["i"]] = seen[i].get(m["i"], 0) + 1
            got[i].append(now - m["t"])
            if m["i"] == messages - 1:
                return

    readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(conns)]

    async def drain_sender() -> None:
        async for _ in sender:
            pass
    drainer = asyncio.create_task(drain_sender())
    start = time.perf_counter()
    for i in range(messages):
        await sender.send(json.dumps({"i": i, "t": time.time()}))
        await asyncio.sleep(max(0.0, start + (i + 1) * interval - time.perf_counter()))
    try:
        await asyncio.wait_for(asyncio.gather(*readers), timeout=60)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - start
    drainer.cancel()
    for ws in [*conns, sender]:
        await ws.close()
    lat = sorted(x for g in got for x in g)
    total = len(lat)
    lost = sum(messages - len(s) for s in seen)
    dups = sum(c - 1 for s in seen for c in s.values() if c > 1)

    def pct(p: float) -> float:
        return lat[min(total - 1, int(p * total))] * 1000 if total else float("nan")
    return {"deliveries": total, "expected": receivers * messages, "lost": lost, "duplicates": dups,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000 if lat else float("nan"),
            "deliveries_per_s": total / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--receivers", type=int, default=200)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    var = Path(tempfile.mkdtemp(prefix="rockstar-latency-"))
    env = {"ROCKSTAR_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "demo_project.settings",
           "REDIS_URL": args.redis, "CHANNELS_REDIS_PREFIX": f"lat{uuid.uuid4().hex[:8]}",
           "ROCKSTAR_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env={**os.environ, **env}, check=True)
    servers = [ServerProcess("daphne", env=env, log_dir=var).start() for _ in range(args.processes)]
    try:
        result = asyncio.run(measure([s.url for s in servers], args.receivers, args.messages, args.interval))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(var, ignore_errors=True)
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=f"{env['CHANNELS_REDIS_PREFIX']}*"))
        if keys:
            client.delete(*keys)
    print(f"daphne x{args.processes} + Redis, {args.receivers} receivers, {args.messages} messages "
          f"{args.interval * 1000:.0f} ms apart:")
    for k, v in result.items():
        print(f"  {k}: {v:.1f}" if isinstance(v, float) else f"  {k}: {v}")


if __name__ == "__main__":
    main()
