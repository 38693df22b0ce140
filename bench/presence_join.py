"""N clients joining one demo room within a few seconds: presence updates against per-join counts.

``python -m bench.presence_join [--clients 2000] [--over 10] [--deadline 60]`` starts one daphne
(``bench.settings``, embedded mode) and, for each case, opens ``clients`` connections to one
fresh room, spread evenly over ``over`` seconds:

- ``presence``: the demo's ``/ws/rooms/<room>`` (presence with coalesced updates, at most one
  frame per member per second, naming who joined);
- ``count``: ``/bench/rooms-count/<room>``, the demo's old room kept here for the comparison:
  every join broadcasts ``{"type": "presence", "event": "joined", "members": n}`` to every member.

A case is complete when every client has learnt of the last joiner (``presence``: an update or
its welcome names it; ``count``: a frame says ``members == clients``), or at ``deadline`` seconds
after the first join. It prints one JSON line per case: presence frames delivered, the entries
they carried, the server's CPU seconds from the first join to completion, and whether it
completed. The client runs in this process (``websockets``), the server in its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent


async def count_room(ctx: Any, conn: Any) -> None:
    """The demo room before presence: every join and leave broadcasts the member count to all."""
    from rockstar_ws import TextMessage
    from rockstar_ws import default_server as ws

    group = f"room.{ctx.request.path_params['room']}"
    await conn.join(group)
    await conn.write_json({"type": "welcome", "members": await ws.group_size(group)})

    async def announce(event: str) -> None:
        await ws.broadcast(group, TextMessage, json.dumps({"type": "presence", "event": event,
                                                           "members": await ws.group_size(group)}))
    await announce("joined")
    try:
        async for _ in conn:
            pass
    finally:
        await conn.leave(group)
        await announce("left")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(var: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    routes = [{"path": "/bench/rooms-count/<slug:room>", "handler": "bench.presence_join.count_room"}]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "ROCKSTAR_VAR_DIR": str(var),
           "BENCH_ROCKSTAR_WS": json.dumps({"ROUTES": routes}), "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    log = open(var / "daphne.log", "wb")  # open as long as the server runs
    proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                             "demo_project.asgi:application"], cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"daphne did not listen on {port}; see {var / 'daphne.log'}")


async def run_case(case: str, port: int, clients: int, over: float, deadline: float, pid: int) -> dict[str, Any]:
    import psutil

    room = f"bench-{uuid.uuid4().hex[:8]}"
    last = f"c{clients - 1}"
    frames = entries = done = 0
    all_done = asyncio.Event()
    conns: list[Any] = []

    async def client(i: int) -> None:
        nonlocal frames, entries, done
        name = f"c{i}"
        path = f"/ws/rooms/{room}?name={name}" if case == "presence" else f"/bench/rooms-count/{room}"
        ws = await connect(f"ws://127.0.0.1:{port}{path}", compression=None, ping_interval=None,
                           open_timeout=60, max_size=None)
        conns.append(ws)
        counted = finished = False
        # Frames are read with string searches, not json.loads: the client shares the machine
        # with the server, and decoding millions of entries would make it the bottleneck.
        last_entry = f'"name":"{last}"'
        async for raw in ws:
            head = raw[:24]
            if '"presence"' in head:
                frames += 1
                if case == "presence":
                    entries += raw.count('"connection_id"')
                    finished = finished or last_entry in raw
                else:
                    entries += 1
                    finished = finished or json.loads(raw)["members"] >= clients
            elif '"welcome"' in head:
                if case == "presence":
                    # Joined after the last joiner (its update went before this client was in):
                    # the welcome's count says everyone is here.
                    finished = name == last or last_entry in raw or json.loads(raw)["users"] >= clients
                else:
                    finished = json.loads(raw)["members"] >= clients
            if finished and not counted:
                counted = True
                done += 1
                if done == clients:
                    all_done.set()

    ps = psutil.Process(pid)
    cpu0 = sum(ps.cpu_times()[:2])
    start = time.monotonic()
    tasks = []
    for i in range(clients):
        tasks.append(asyncio.ensure_future(client(i)))
        # An even spread over `over` seconds, on the clock (a slow join does not delay the next).
        await asyncio.sleep(max(0.0, start + (i + 1) * over / clients - time.monotonic()))
    try:
        await asyncio.wait_for(all_done.wait(), max(0.1, deadline - (time.monotonic() - start)))
        complete = True
    except TimeoutError:
        complete = False
    elapsed = time.monotonic() - start
    cpu = sum(ps.cpu_times()[:2]) - cpu0
    result = {"case": case, "clients": clients, "over_s": over, "complete": complete,
              "clients_done": done, "elapsed_s": round(elapsed, 2), "presence_frames": frames,
              "entries": entries, "server_cpu_s": round(cpu, 2)}
    for t in tasks:
        t.cancel()
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="presence-bench-") as tmp:
        proc, port = start_server(Path(tmp))
        try:
            out = []
            for case in args.cases.split(","):
                result = await run_case(case, port, args.clients, args.over, args.deadline, proc.pid)
                print(json.dumps(result), flush=True)
                out.append(result)
            return out
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--over", type=float, default=10.0, help="seconds over which the clients join")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds after the first join")
    parser.add_argument("--cases", default="presence,count")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
