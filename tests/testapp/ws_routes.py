"""Routes the end-to-end tests drive through a real server.

``/ws/test/probe`` answers JSON questions about the server process itself (events recorded by
other test routes, live connection counts), so a test can check what ran inside the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from rockstar_ws import ConnectionClosed, Context, Deny, TextMessage, Upgrader, WebSocketConnection
from rockstar_ws import default_server as ws

#: Things that happened inside this server process, in order (read through the probe).
EVENTS: list[str] = []


def record(event: str) -> None:
    EVENTS.append(event)


@ws.route("/ws/test/probe")
async def probe(ctx: Context, conn: WebSocketConnection) -> None:
    async for _t, data in conn:
        q = json.loads(data)
        if q["get"] == "events":
            await conn.write_json(EVENTS)
        elif q["get"] == "clear":
            EVENTS.clear()
            await conn.write_json([])
        elif q["get"] == "connections":
            await conn.write_json(ctx.server.get_connections())
        elif q["get"] == "stats":
            s = ctx.server.stats
            await conn.write_json({"opened": s.opened_total, "refused": dict(s.refused_total),
                                   "closed": {str(k): v for k, v in s.closed_total.items()}})


@ws.route("/ws/test/info")
async def info(ctx: Context, conn: WebSocketConnection) -> None:
    r = ctx.request
    await conn.write_json({
        "remote_addr": conn.remote_addr, "local_addr": conn.local_addr, "path": r.path, "host": r.host,
        "query": r.query, "path_params": {k: str(v) for k, v in r.path_params.items()},
        "tenant_id": r.tenant_id, "user_id": r.user_id, "scopes": sorted(r.scopes),
        "subprotocol": conn.subprotocol, "headers_host": r.headers.get("host"),
    })
    async for _ in conn:
        pass


ws.register_route("/ws/test/items/<int:item_id>/<slug:slug>", info)
ws.register_host_route("*.wild.localhost", "/ws/test/info", info)
ws.register_host_route("exact.wild.localhost", "/ws/test/where", info)


async def where_global(ctx: Context, conn: WebSocketConnection) -> None:
    await conn.write_message(TextMessage, "global")


async def where_host(ctx: Context, conn: WebSocketConnection) -> None:
    await conn.write_message(TextMessage, f"host:{ctx.request.host}")


ws.register_route("/ws/test/lookup", where_global)
ws.register_host_route("special.localhost", "/ws/test/lookup", where_host)
ws.register_host_route("*.wild.localhost", "/ws/test/lookup", where_host)


def _mw(name: str):
    async def mw(ctx: Context, next):
        record(f"{name}:before")
        ctx.state.setdefault("order", []).append(name)
        try:
            return await next(ctx)
        finally:
            record(f"{name}:after")
    return mw


async def order_handler(ctx: Context, conn: WebSocketConnection) -> None:
    record("handler")
    await conn.write_json(ctx.state["order"])
    async for _ in conn:
        pass


ws.register_route("/ws/test/mw-order", order_handler, [_mw("outer"), _mw("middle"), _mw("inner")])


async def refusing_mw(ctx: Context, next):
    record("refusing_mw")
    if ctx.request.query_param("let") != "in":
        raise Deny(403, "no entry")
    return await next(ctx)


async def guarded(ctx: Context, conn: WebSocketConnection) -> None:
    record("guarded-handler")
    await conn.write_message(TextMessage, "inside")
    async for _ in conn:
        pass


ws.register_route("/ws/test/guarded", guarded, [refusing_mw])


async def crashing(ctx: Context, conn: WebSocketConnection) -> None:
    await conn.read_message()
    record("crashing:raise")
    raise RuntimeError("handler bug")


ws.register_route("/ws/test/crash", crashing)


def sync_echo(ctx: Context, conn: Any) -> None:
    """A plain def handler: blocking calls in a worker thread, ORM allowed."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.count()
    conn.write_message(TextMessage, f"sync users={users}")
    for message_type, data in conn:
        conn.write_message(message_type, data)


ws.register_route("/ws/test/sync", sync_echo)


async def after_close(ctx: Context, conn: WebSocketConnection) -> None:
    await conn.read_message()
    await conn.close(1000, "bye")
    await conn.close()  # idempotent
    try:
        await conn.write_message(TextMessage, "too late")
    except ConnectionClosed as exc:
        record(f"write-after-close:{exc.code}")
    try:
        await conn.read_message()
    except ConnectionClosed:
        record("read-after-close")


ws.register_route("/ws/test/after-close", after_close)


async def waits_for_cancel(ctx: Context, conn: WebSocketConnection) -> None:
    await conn.write_message(TextMessage, "waiting")
    started = time.monotonic()
    await ctx.wait_closed()  # the reference's ctx cancellation
    record(f"ctx-done:{ctx.closed}:{conn.closed}:{time.monotonic() - started < 30}")


ws.register_route("/ws/test/cancel", waits_for_cancel)


async def push_only(ctx: Context, conn: WebSocketConnection) -> None:
    i = 0
    while not ctx.closed:
        await conn.write_message(TextMessage, f"tick {i}")
        i += 1
        await asyncio.sleep(0.05)
    record("push-only:ended")


ws.register_route("/ws/test/push", push_only)


async def reads_then_waits(ctx: Context, conn: WebSocketConnection) -> None:
    """Reads (so the pump parks and the handler receives for itself), then waits for a cue without
    reading: the client's close must still reach ``ctx`` (the parked pump's watchdog)."""
    _type, data = await conn.read_message()
    await conn.write_message(TextMessage, f"got {data}")
    _type, data = await conn.read_message()  # a second read: this one received by the handler itself
    await conn.write_message(TextMessage, f"got {data}")
    started = time.monotonic()
    await ctx.wait_closed()
    record(f"reads-then-waits:{conn.closed}:{time.monotonic() - started < 30}")


ws.register_route("/ws/test/reads-then-waits", reads_then_waits)


async def small_echo(ctx: Context, conn: WebSocketConnection) -> None:
    async for t, data in conn:
        await conn.write_message(t, data)


ws.register_route("/ws/test/small", small_echo, upgrader=Upgrader(max_message_size=16))


async def returns_at_once(ctx: Context, conn: WebSocketConnection) -> None:
    await conn.write_message(TextMessage, "bye")


ws.register_route("/ws/test/returns", returns_at_once)
ws.register_authenticated_route("/ws/test/private", small_echo, allowed_scopes=["chat:write"])


async def global_mw(ctx: Context, next):
    """Used by tests that set ROCKSTAR_WS["MIDDLEWARE"]: tags every connection."""
    ctx.state.setdefault("order", []).append("global")
    return await next(ctx)


async def state_handler(ctx: Context, conn: WebSocketConnection) -> None:
    await conn.write_json(ctx.state.get("order", []))


ws.register_route("/ws/test/state", state_handler, [_mw("route")])

from . import auth_routes, client_routes, live_routes, presence_routes, pubsub_routes, ws_group_routes  # noqa: E402, F401  (routes of other test modules)


# -- a project's own handshake stage (docs/architecture.md, "Where a new feature plugs in") ----
async def require_ticket(ctx: Context) -> None:
    """Admit /ws/test/staged only with ?ticket=ok; record what it saw (the route is known here)."""
    if ctx.request.path != "/ws/test/staged":
        return None
    if ctx.request.query_param("ticket") != "ok":
        record("ticket refused")
        raise Deny(403, "no ticket")
    record(f"ticket admitted for {ctx.route.label}")
    return None


ws.add_stage(require_ticket, name="ticket")


@ws.route("/ws/test/staged")
async def staged(ctx: Context, conn: WebSocketConnection) -> None:
    record("staged handler ran")
    await conn.write_json(ctx.server.pipeline.names)


async def relay(ctx: Context, conn: WebSocketConnection) -> None:
    """Through the channel layer to its own channel: ``send N`` (N ``rockstar.send`` messages, in
    order), ``close`` (a ``rockstar.close``), ``tasks`` (this process's asyncio tasks, as JSON)."""
    layer = ctx.server.channel_layer
    async for _t, data in conn:
        if data.startswith("send "):
            for i in range(int(data[5:])):
                await layer.send(conn.channel_name, {"type": "rockstar.send", "message_type": TextMessage,
                                                     "data": f"r{i}"})
        elif data == "close":
            await layer.send(conn.channel_name, {"type": "rockstar.close", "code": 4321, "reason": "relayed"})
        elif data == "tasks":
            await conn.write_json({"tasks": len(asyncio.all_tasks()), "layer": type(layer).__module__})


ws.register_route("/ws/test/relay", relay)


# -- a handshake slower than the server's own handshake timeout (daphne --websocket_connect_timeout)
async def slow_handshake(ctx: Context, next: Any) -> Any:
    """Wait ``?delay=`` seconds before the accept; record when the connection has ended."""
    await asyncio.sleep(float(ctx.request.query_param("delay") or 0))
    try:
        return await next(ctx)
    finally:
        record("slow-handshake ended")


async def slow_handler(ctx: Context, conn: WebSocketConnection) -> None:
    record("slow-handshake handler ran")
    async for _message in conn:
        pass


ws.register_route("/ws/test/slow-handshake", slow_handler, [slow_handshake])


def _slow_consumer() -> Any:
    """A Channels consumer behind the same slow middleware: what it sees when daphne has already
    refused the handshake by the time its accept goes out."""
    from channels.generic.websocket import AsyncWebsocketConsumer

    class SlowConsumer(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.accept()
            record("slow-handshake consumer accept returned")

        async def disconnect(self, code: int) -> None:
            record("slow-handshake consumer disconnected")

    return SlowConsumer.as_asgi()


ws.register_route("/ws/test/slow-handshake-consumer", _slow_consumer(), [slow_handshake])
