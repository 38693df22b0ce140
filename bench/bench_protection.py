"""Figures for docs/protection.md (not a test: timings vary with the machine).

    python bench/bench_protection.py

Prints the cost of the per-message protection work (the rate-limit bucket in the pump, the
write guard in write_message) and how long daphne and uvicorn take to drop a client that stops
answering pings, with 1-2 s ping settings.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from rockstar_ws.limits.guard import ConnectionGuard  # noqa: E402
from rockstar_ws.limits.upgrader import settings_upgrader  # noqa: E402
from rockstar_ws.servers.bridges import ServerBridge  # noqa: E402
from tests.conftest import probe  # noqa: E402
from tests.hostile import RawClient  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402


class _Conn:
    closed = False
    _on_close: list = []

    async def _send(self, message: dict) -> None:
        pass


async def hot_path() -> None:
    conn = _Conn()
    guard = ConnectionGuard(conn, settings_upgrader(), ServerBridge(conn._send))
    guard.bucket.rate = 1e12  # never over the rate: the arithmetic only
    n = 1_000_000
    print(f"guard.allow() per client message: {timeit.timeit(guard.allow, number=n) / n * 1e9:.0f} ns")
    message = {"type": "websocket.send", "text": "x"}
    loop = asyncio.get_running_loop()
    for name, send in (("plain send", conn._send), ("guarded send (WRITE_TIMEOUT on)", guard.send)):
        t0 = loop.time()
        for _ in range(200_000):
            await send(message)
        print(f"{name}: {(loop.time() - t0) / 200_000 * 1e9:.0f} ns per write")


async def ping_drop(kind: str, args: list[str], var: str) -> None:
    env = {"DJANGO_SETTINGS_MODULE": "tests.protect_settings", "ROCKSTAR_VAR_DIR": var}
    server = ServerProcess(kind, env=env, log_dir=Path(var), args=args).start()
    try:
        raw = await RawClient.upgrade(server, "/ws/echo")
        t0 = time.monotonic()
        while await probe(server, "connections") - 1 != 0:
            await asyncio.sleep(0.1)
        print(f"{kind} {' '.join(args)}: a client that answers no ping was dropped after "
              f"{time.monotonic() - t0:.1f}s")
        raw.close()
    finally:
        server.stop()


def main() -> None:
    asyncio.run(hot_path())
    with tempfile.TemporaryDirectory() as var:
        import subprocess

        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], check=True,
                       env={**os.environ, "ROCKSTAR_VAR_DIR": var}, cwd=Path(__file__).resolve().parent.parent)
        asyncio.run(ping_drop("daphne", ["--ping-interval", "1", "--ping-timeout", "2"], var))
        asyncio.run(ping_drop("uvicorn", ["--ws-ping-interval", "1", "--ws-ping-timeout", "1"], var))


if __name__ == "__main__":
    main()
