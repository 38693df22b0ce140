"""The load generator: one client process, the ``websockets`` library on uvloop.

``python -m bench.loadgen '<json job>'`` runs one job and prints one JSON line with its figures.
Jobs (``"mode"``):

- ``echo``: ``conns`` connections, each a closed loop (send ``size`` bytes of text, wait for the
  echo, repeat) for ``warmup`` then ``duration`` seconds; round trips and their latencies counted
  in the measured window only.
- ``handshake``: ``concurrency`` workers, each opening a connection and closing it again, for
  ``warmup`` then ``duration`` seconds; a handshake counts when the server accepted it.
- ``hold``: open ``conns`` connections (``concurrency`` at a time), print ``HELD <n> <failed>``,
  keep them idle until a line arrives on stdin, then close them.
- ``broadcast``: ``receivers`` connections listen; one sender connection sends ``messages``
  messages ``interval`` seconds apart (0: back to back), each carrying its number and send time;
  every receiver records the latency of each delivery; deliveries, lost, duplicates, p50/p99 are
  reported.

Every client uses the same options: no compression, no pings, Host 127.0.0.1, so every row
of a run meets exactly the same client.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from websockets.asyncio.client import connect

try:
    import uvloop
except ImportError:  # pragma: no cover - uvicorn[standard] brings it
    uvloop = None

CLIENT_OPTS = {"compression": None, "ping_interval": None, "open_timeout": 30, "close_timeout": 10,
               "max_size": 2**20}


def _connect(url: str, extra: dict[str, Any] | None = None):
    return connect(url, **{**CLIENT_OPTS, **(extra or {})})


def mark(what: str) -> None:
    """Tell the runner the measured window starts or stops (it samples the server's CPU then)."""
    print(f"MARK {what}", flush=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _open_many(url: str, n: int, concurrency: int, extra: dict[str, Any] | None = None) -> tuple[list, int]:
    sem = asyncio.Semaphore(concurrency)
    opened: list = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with sem:
            try:
                opened.append(await _connect(url, extra))
            except Exception:
                failed += 1
    await asyncio.gather(*(one() for _ in range(n)))
    return opened, failed


async def echo(job: dict[str, Any]) -> dict[str, Any]:
    conns, failed = await _open_many(job["url"], job["conns"], 25, job.get("connect"))
    payload = "x" * job["size"]
    measuring = False
    stop = False
    count = 0
    errors = 0
    latencies: list[float] = []

    async def loop(ws) -> None:
        nonlocal count, errors
        perf = time.perf_counter
        try:
            while not stop:
                t0 = perf()
                await ws.send(payload)
                reply = await ws.recv()
                if measuring and not stop:
                    latencies.append(perf() - t0)
                    count += 1
                if reply != payload:
                    errors += 1
        except Exception:
            errors += 1

    tasks = [asyncio.ensure_future(loop(ws)) for ws in conns]
    await asyncio.sleep(job.get("warmup", 1.0))
    measuring = True
    mark("start")
    t_start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.sleep(job["duration"])
    stop = True
    elapsed, client_cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    mark("stop")
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return {"ops": count, "elapsed": elapsed, "rate": count / elapsed, "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99), "errors": errors + failed, "connections": len(conns),
            "client_cpu": client_cpu / elapsed}


async def handshake(job: dict[str, Any]) -> dict[str, Any]:
    measuring = False
    stop = False
    count = 0
    errors = 0
    error_kinds: dict[str, int] = {}
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal count, errors
        perf = time.perf_counter
        while not stop:
            t0 = perf()
            try:
                ws = await _connect(job["url"], job.get("connect"))
            except Exception as exc:
                if measuring:
                    errors += 1
                    kind = type(exc).__name__ + (f" {exc.response.status_code}" if hasattr(exc, "response") else "")
                    error_kinds[kind] = error_kinds.get(kind, 0) + 1
                await asyncio.sleep(0.01)
                continue
            opened = perf()
            try:
                await ws.close()
            except Exception:
                pass
            if measuring and not stop:
                latencies.append(opened - t0)
                count += 1

    tasks = [asyncio.ensure_future(worker()) for _ in range(job["concurrency"])]
    await asyncio.sleep(job.get("warmup", 1.0))
    measuring = True
    mark("start")
    t_start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.sleep(job["duration"])
    stop = True
    elapsed, client_cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
    mark("stop")
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"ops": count, "elapsed": elapsed, "rate": count / elapsed, "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99), "errors": errors, "error_kinds": error_kinds,
            "client_cpu": client_cpu / elapsed}


async def hold(job: dict[str, Any]) -> dict[str, Any]:
    conns, failed = await _open_many(job["url"], job["conns"], job.get("concurrency", 20), job.get("connect"))
    print(f"HELD {len(conns)} {failed}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    alive = sum(1 for ws in conns if ws.state.name == "OPEN")
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return {"held": len(conns), "failed": failed, "alive_at_end": alive}


async def broadcast(job: dict[str, Any]) -> dict[str, Any]:
    """Receivers on ``urls`` (round robin), one sender on ``sender_url``; latency = receive - send.

    Each message carries its number and send time, so every receiver counts what it got, what it
    got twice and what it never got. ``interval`` 0 sends the messages back to back: each
    ``send`` returns as soon as the connection takes it, so the server's intake paces the sender
    (the saturation rows). The rate is deliveries over the time from the first send to the last
    delivery; the wait for late deliveries ends at ``drain`` seconds after the last send, or once
    nothing arrived for ``idle`` seconds.
    """
    urls = job["urls"]
    receivers: list = []
    failed = 0
    for i in range(job["receivers"]):
        try:
            receivers.append(await _connect(urls[i % len(urls)], job.get("connect")))
        except Exception:
            failed += 1
    sender = await _connect(job["sender_url"], job.get("connect"))
    await asyncio.sleep(job.get("settle", 1.0))
    latencies: list[float] = []
    received = duplicates = 0
    last_delivery = 0.0
    n = job["messages"]

    async def listen(ws) -> None:
        nonlocal received, duplicates, last_delivery
        seen: set[int] = set()
        try:
            while len(seen) < n:
                msg = await ws.recv()
                now = time.time()
                number, sent, _pad = msg.split(" ", 2)
                i = int(number)
                if i in seen:
                    duplicates += 1
                    continue
                seen.add(i)
                latencies.append(now - float(sent))
                received += 1
                last_delivery = time.perf_counter()
        except Exception:
            pass

    tasks = [asyncio.ensure_future(listen(ws)) for ws in receivers]
    mark("start")
    t_start, cpu_start = time.perf_counter(), time.process_time()
    interval = job["interval"]
    for i in range(n):
        await sender.send(f"{i} {time.time():.6f} " + "x" * 32)
        if interval:
            await asyncio.sleep(interval)
    sent_at = time.perf_counter()
    pending = set(tasks)
    idle = job.get("idle", 5.0)
    while pending:
        _done, pending = await asyncio.wait(pending, timeout=0.25)
        now = time.perf_counter()
        if now - sent_at > job.get("drain", 10.0) or now - max(last_delivery, sent_at) > idle:
            break
    end = last_delivery if last_delivery > t_start else time.perf_counter()
    elapsed, client_cpu = end - t_start, time.process_time() - cpu_start
    mark("stop")
    for task in pending:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in [*receivers, sender]), return_exceptions=True)
    expected = len(receivers) * n
    return {"ops": received, "elapsed": elapsed, "rate": received / elapsed, "p50": percentile(latencies, 0.50),
            "p99": percentile(latencies, 0.99), "lost": expected - received + failed * n, "duplicates": duplicates,
            "errors": failed, "send_secs": sent_at - t_start, "client_cpu": client_cpu / elapsed}


MODES = {"echo": echo, "handshake": handshake, "hold": hold, "broadcast": broadcast}


def main() -> None:
    job = json.loads(sys.argv[1])
    run = MODES[job["mode"]]
    if uvloop is not None:
        result = uvloop.run(run(job))
    else:
        result = asyncio.run(run(job))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
