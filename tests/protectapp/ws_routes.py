"""Routes the protection tests attack (served by tests.protect_settings servers only).

Events go to the probe's list (tests/testapp/ws_routes.py), so a test can see what ran.
"""

from __future__ import annotations

import asyncio

from rockstar_ws import ConnectionClosed, Context, TextMessage, Upgrader, WebSocketConnection
from rockstar_ws import default_server as ws
from tests.testapp.ws_routes import record


async def echo(ctx: Context, conn: WebSocketConnection) -> None:
    record(f"echo:{ctx.request.path}")
    async for t, data in conn:
        await conn.write_message(t, data)


# message size edges: 1000 bytes
ws.register_route("/ws/p/limited", echo, upgrader=Upgrader(max_message_size=1000))
# origins
ws.register_route("/ws/p/strict-origin", echo, upgrader=Upgrader(allow_missing_origin=False))
ws.register_route("/ws/p/partner-origin", echo, upgrader=Upgrader(allowed_origins=["https://partner.example"]))
ws.register_route("/ws/p/no-origin-check", echo, upgrader=Upgrader(check_origin=lambda ctx: True))
# rate-limit policies
ws.register_route("/ws/p/flood-close", echo, upgrader=Upgrader(message_rate=5, message_burst=10))
ws.register_route("/ws/p/flood-4429", echo,
                  upgrader=Upgrader(message_rate=5, message_burst=10, rate_limit_policy="close-4429"))
ws.register_route("/ws/p/flood-drop", echo,
                  upgrader=Upgrader(message_rate=5, message_burst=10, rate_limit_policy="drop"))
ws.register_route("/ws/p/unlimited", echo, upgrader=Upgrader(message_rate=0))
# idle timeout
ws.register_route("/ws/p/idle", echo, upgrader=Upgrader(idle_timeout=0.5))


@ws.route("/ws/p/json")
async def json_echo(ctx: Context, conn: WebSocketConnection) -> None:
    try:
        while True:
            await conn.write_json({"got": await conn.read_json()})
    except ConnectionClosed as exc:
        record(f"json:closed:{exc.code}")
        raise


@ws.route("/ws/p/json-small")
async def json_small(ctx: Context, conn: WebSocketConnection) -> None:
    try:
        while True:
            await conn.write_json({"got": await conn.read_json(max_size=64)})
    except ConnectionClosed as exc:
        record(f"json-small:closed:{exc.code}")
        raise


@ws.route("/ws/p/read-timeout")
async def read_timeout(ctx: Context, conn: WebSocketConnection) -> None:
    """Waits 0.3 s for each message; a timeout is reported and the connection stays open."""
    while True:
        try:
            t, data = await conn.read_message(timeout=0.3)
        except TimeoutError:
            await conn.write_message(TextMessage, "timeout")
            continue
        await conn.write_message(t, data)


@ws.route("/ws/p/firehose")
async def firehose(ctx: Context, conn: WebSocketConnection) -> None:
    """Writes 64 KiB messages as fast as the server takes them, for clients that never read."""
    chunk = b"x" * 65536
    sent = 0
    try:
        while True:
            await conn.write_message(2, chunk)
            sent += 1
            await asyncio.sleep(0)
    except ConnectionClosed as exc:
        record(f"firehose:closed:{exc.code}:{exc.reason}")


@ws.route("/ws/p/deaf", upgrader=Upgrader(message_rate=0))
async def deaf(ctx: Context, conn: WebSocketConnection) -> None:
    """Never reads: the inbox fills up."""
    await ctx.wait_closed()
    record(f"deaf:closed:{conn.close_code}")


@ws.route("/ws/p/sleeper")
async def sleeper(ctx: Context, conn: WebSocketConnection) -> None:
    """Holds the connection without reading (for the shutdown test)."""
    record("sleeper:open")
    await conn.write_message(TextMessage, "ready")
    await asyncio.sleep(3600)


def sync_json(ctx: Context, conn) -> None:
    """A plain def handler: read_json() works on the SyncConnection too."""
    while True:
        conn.write_json({"got": conn.read_json()})


ws.register_route("/ws/p/sync-json", sync_json)


# -- handshake hardening (tests/e2e/test_hardening.py) -------------------------------------------
@ws.route("/ws/p/greeter")
async def greeter(ctx: Context, conn: WebSocketConnection) -> None:
    """Writes at once: on a handshake the server never completed, the write would fail."""
    record(f"greeter:{conn.subprotocol}")
    await conn.write_message(TextMessage, f"hello {conn.subprotocol}")
    async for t, data in conn:
        await conn.write_message(t, data)


async def picks_unoffered_subprotocol(ctx: Context, next):
    record("picker-mw")
    ctx.subprotocol = "never.offered"
    return await next(ctx)


ws.register_route("/ws/p/bad-pick", greeter, [picks_unoffered_subprotocol])
ws.register_route("/ws/p/chat-v1", greeter, upgrader=Upgrader(subprotocols=["chat.v1"]))
