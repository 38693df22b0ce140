"""Routes for the JS client's browser tests (tests/e2e/test_client_browser.py).

``/ws/test/jsclient/echo`` records when each connection was accepted and every text it got, so
a test can read, from the server process itself, how many clients came back after a restart,
over how long, and in which order their messages arrived.
"""

from __future__ import annotations

import time

from rockstar_ws import Context, WebSocketConnection
from rockstar_ws import default_server as ws

#: Accept times (time.time()) of /ws/test/jsclient/echo connections in this process.
ACCEPTED: list[float] = []
#: Texts /ws/test/jsclient/echo received, in arrival order.
RECEIVED: list[str] = []


@ws.route("/ws/test/jsclient/echo")
async def recording_echo(ctx: Context, conn: WebSocketConnection) -> None:
    ACCEPTED.append(time.time())
    async for message_type, data in conn:
        if isinstance(data, str):
            RECEIVED.append(data)
        await conn.write_message(message_type, data)


@ws.route("/ws/test/jsclient/record")
async def record(ctx: Context, conn: WebSocketConnection) -> None:
    await conn.write_json({"accepted": ACCEPTED, "received": RECEIVED})
