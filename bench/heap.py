"""Python heap per connection, by source file: ``python -m bench.heap plain|rockstar [N]``.

Runs the benchmark's ASGI app (bench/plain_channels.py or bench/rockstar_app.py) in this process
with N fake idle connections on /bench/echo (an ``asyncio.Queue`` as ``receive``, a no-op
``send``) and prints what tracemalloc saw them allocate, per connection and per file. The ASGI
server's own share (daphne's protocol objects) is not included: it is the same for both apps.
Use it to see what a feature adds per connection; the memory rows of bench/run.py give RSS.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import sys
import tempfile
import tracemalloc
from typing import Any

APPS = {"plain": "bench.plain_channels", "rockstar": "bench.rockstar_app"}


def _scope() -> dict[str, Any]:
    return {"type": "websocket", "path": "/bench/echo", "raw_path": b"/bench/echo", "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000")], "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000), "subprotocols": [], "scheme": "ws", "asgi": {"version": "3.0"}}


async def measure(app: Any, n: int) -> tuple[float, list[tuple[float, float, str]], float]:
    tasks: list[asyncio.Future[Any]] = []
    queues: list[asyncio.Queue[dict[str, Any]]] = []

    async def send(message: dict[str, Any]) -> None:
        pass

    def one() -> None:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        q.put_nowait({"type": "websocket.connect"})
        queues.append(q)
        tasks.append(asyncio.ensure_future(app(_scope(), q.get, send)))

    one()  # the first connection loads what is loaded lazily
    await asyncio.sleep(0.2)
    gc.collect()
    tracemalloc.start(4)
    before = tracemalloc.take_snapshot()
    for _ in range(n):
        one()
    for _ in range(20):
        await asyncio.sleep(0.01)
    gc.collect()
    after = tracemalloc.take_snapshot()
    stats = after.compare_to(before, "filename")
    total = sum(s.size_diff for s in stats) / n
    rows = [(s.size_diff / n, s.count_diff / n, s.traceback[0].filename.split("site-packages/")[-1])
            for s in stats[:15]]
    tasks_per_conn = (len(asyncio.all_tasks()) - 1) / (n + 1)
    for q in queues:
        q.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.gather(*tasks, return_exceptions=True)
    return total, rows, tasks_per_conn


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "rockstar"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    os.environ.setdefault("ROCKSTAR_VAR_DIR", tempfile.mkdtemp(prefix="rockstar-bench-heap-"))
    app = importlib.import_module(APPS[which]).application
    total, rows, tasks = asyncio.run(measure(app, n))
    print(f"{which}: {total:,.0f} B of Python heap per idle connection ({n} connections), {tasks:.1f} tasks each")
    for size, count, filename in rows:
        print(f"  {size:7,.0f} B {count:5.1f} blocks  {filename}")


if __name__ == "__main__":
    main()
