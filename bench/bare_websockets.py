"""The ceiling: a bare ``websockets`` asyncio echo server, no Django, no ASGI.

``python -m bench.bare_websockets PORT``. Compression off (the client never offers it anyway),
on uvloop when it is installed (as uvicorn runs), so it is the fastest plain-Python echo here.
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, compression=None, ping_interval=None, max_size=2**20):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        asyncio.run(main(int(sys.argv[1])))
    else:
        uvloop.run(main(int(sys.argv[1])))
