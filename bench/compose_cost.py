"""What serving a Channels consumer behind a rockstar_ws route costs: ``python -m bench.compose_cost``.

Python function calls (cProfile's count, which load on the machine does not change) per echoed
message of one ``AsyncWebsocketConsumer``, served by Channels alone and behind a rockstar_ws
route, and per handshake of a native handler route; in process, through a fake ASGI server (a
queue), so only the application's work is counted. The message rate limit is off: the figure is
the path, not the limit.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
from typing import Any

SCOPE = {"type": "websocket", "path": "/ws/echo", "headers": [(b"host", b"127.0.0.1")],
         "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "subprotocols": [], "query_string": b""}


async def _echo(app: Any, n: int) -> None:
    """One connection echoing ``n`` messages, then the client's close."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    got = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal got
        if message["type"] == "websocket.accept":
            inbox.put_nowait({"type": "websocket.receive", "text": "x"})
        elif message["type"] == "websocket.send":
            got += 1
            inbox.put_nowait({"type": "websocket.receive", "text": "x"} if got < n else
                             {"type": "websocket.disconnect", "code": 1000})

    await app(dict(SCOPE), inbox.get, send)
    assert got == n, f"{got} of {n} messages echoed"


def _calls(run: Any) -> int:
    profile = cProfile.Profile()
    profile.enable()
    asyncio.run(run())
    profile.disable()
    return pstats.Stats(profile).total_calls


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from channels.generic.websocket import AsyncWebsocketConsumer

    from rockstar_ws import WebSocketServer

    class Echo(AsyncWebsocketConsumer):
        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            await self.send(text_data=text_data)

    server = WebSocketServer(name="compose-cost")
    server.per_connection_channel = False
    server.set_upgrader(message_rate=0)
    server.register_route("/ws/echo", Echo.as_asgi())

    async def native(ctx: Any, conn: Any) -> None:
        async for kind, data in conn:
            await conn.write_message(kind, data)

    native_server = WebSocketServer(name="compose-cost-native")
    native_server.per_connection_channel = False
    native_server.set_upgrader(message_rate=0)
    native_server.register_route("/ws/echo", native)

    for name, app in (("Channels alone", Echo.as_asgi()), ("behind a rockstar_ws route", server),
                      ("rockstar_ws handler", native_server)):
        asyncio.run(_echo(app, 200))  # warm: imports, caches
        small, large = (_calls(lambda n=n, app=app: _echo(app, n)) for n in (1000, 3000))
        print(f"{name:28} {(large - small) / 2000:6.1f} calls per echoed message, "
              f"{small - (large - small) / 2:7.0f} per run (handshake, close, the event loop's start)")


if __name__ == "__main__":
    main()
