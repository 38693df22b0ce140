"""A process holding presence members, for the kill -9 test: ``python -m tests.presence_proc URL PREFIX PROCESS N``.

It joins N members (user ``u<i>``) to the group ``room`` through a RedisPresenceStore with a
short heartbeat, prints ``ready`` and keeps beating until it is killed.
"""

from __future__ import annotations

import asyncio
import sys


async def main(url: str, prefix: str, process: str, n: int) -> None:
    from rockstar_ws.presence import RedisPresenceStore

    store = RedisPresenceStore(url, prefix=prefix, process=process, heartbeat=0.25, ttl=1.0)
    for i in range(n):
        await store.join("room", store.member(f"{process}-c{i}", user_id=f"u{i}", info={"name": f"user {i}"}))
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
