"""The reference's examples, registered on the default server (autodiscovered at start-up)."""

import json
from datetime import UTC, datetime
from typing import Any

from rockstar_ws import ConnectionClosed, Context, InvalidGroupName, TextMessage, WebSocketConnection
from rockstar_ws import default_server as ws

from .middleware import ws_logging_middleware


# Simple Echo Server: text and binary come back with their type.
@ws.route("/ws/echo")
async def echo(ctx: Context, conn: WebSocketConnection) -> None:
    while True:
        message_type, data = await conn.read_message()  # raises ConnectionClosed when the client goes
        await conn.write_message(message_type, data)


# The same echo as a plain function (runs in a worker thread).
@ws.route("/ws/echo-sync")
def echo_sync(ctx: Context, conn: Any) -> None:
    while True:
        message_type, data = conn.read_message()
        conn.write_message(message_type, data)


# WebSocket with Middleware: the same echo, wrapped in the logging middleware.
ws.register_route("/ws/echo-logged", echo, [ws_logging_middleware])


# Multi-Tenant WebSocket: one handler on two tenant hosts.
async def tenant_handler(ctx: Context, conn: WebSocketConnection) -> None:
    tenant_id = ctx.request.tenant_id
    async for _message_type, data in conn:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        await conn.write_message(TextMessage, f"[{tenant_id}] {text}")


ws.register_host_route("tenant1.localhost", "/ws/chat", tenant_handler)
ws.register_host_route("tenant2.localhost", "/ws/chat", tenant_handler)


# Authenticated host route (the reference's RegisterAuthenticatedHostRoute example): only on
# tenant1's host, only tokens of tenant1 holding admin:access (tenant binding: docs/tenants.md).
async def tenant_admin(ctx: Context, conn: WebSocketConnection) -> None:
    tenant_id = ctx.request.tenant_id
    user_id = ctx.request.user_id
    await conn.write_json({"tenant_id": tenant_id, "user_id": user_id})
    async for _message_type, data in conn:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        await conn.write_message(TextMessage, f"[{tenant_id}] admin {user_id}: {text}")


ws.register_authenticated_host_route("tenant1.localhost", "/ws/admin", tenant_admin, None, ["admin:access"])


# Chat Application: the reference's ChatRoom, working and across processes (docs/broadcast.md).
# The global /ws/chat (any other host; tenant hosts get the routes above) is one room: every
# message reaches every client of the room, the sender too, in every server process.
@ws.route("/ws/chat")
async def chat(ctx: Context, conn: WebSocketConnection) -> None:
    await conn.join("chat")  # left automatically when the connection ends
    async for message_type, data in conn:
        await ws.broadcast("chat", message_type, data)


# Rooms for the browser chat at /chat/<room>/: JSON in ({"name", "text"}), JSON out to the room.
# Anything that is not JSON closes the connection with 1007 (conn.read_json).
@ws.route("/ws/rooms/<slug:room>")
async def chat_room(ctx: Context, conn: WebSocketConnection) -> None:
    room = ctx.request.path_params["room"]
    group = f"room.{room}"
    try:
        await conn.join(group)
    except InvalidGroupName:
        await conn.close(4400, "room name too long")
        return
    user = getattr(ctx, "user", None)
    account = user.get_username() if getattr(user, "is_authenticated", False) else ""
    await conn.write_json({"type": "welcome", "room": room, "members": await ws.group_size(group)})
    await _presence(group, "joined")
    try:
        while True:
            # Not JSON, or nested too deep to parse: read_json closes with 1007 and raises
            # ConnectionClosed, which ends the loop.
            body = await conn.read_json()
            if not isinstance(body, dict) or not str(body.get("text", "")).strip():
                continue
            name = account or str(body.get("name") or "guest").strip()[:40] or "guest"
            await ws.broadcast(group, TextMessage, json.dumps({
                "type": "message", "name": name, "text": str(body["text"])[:2000],
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }))
    except ConnectionClosed:
        pass
    finally:
        await conn.leave(group)
        await _presence(group, "left")


async def _presence(group: str, event: str) -> None:
    await ws.broadcast(group, TextMessage, json.dumps({"type": "presence", "event": event,
                                                       "members": await ws.group_size(group)}))


# Authenticated WebSocket: only access tokens with the chat:write scope get in (alice, not bob).
async def private_handler(ctx: Context, conn: WebSocketConnection) -> None:
    user_id = ctx.request.user_id
    async for _message_type, data in conn:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        await conn.write_message(TextMessage, f"User {user_id}: {text}")


ws.register_authenticated_route("/ws/private", private_handler, allowed_scopes=["chat:write"])
# The same route for the /private/ page: a browser hides a refusal's HTTP status (it sees 1006),
# so this one refuses with close codes the page can show (4401 token, 4403 scope).
ws.register_authenticated_route("/ws/private-browser", private_handler, allowed_scopes=["chat:write"],
                                refusal_mode="close")


# Subscriptions (docs/protocol.md): one pub/sub route, groups decided by rules. A token is
# optional here: news is open to anyone; room.<name> and user:<id> need one. The history of
# each group (N publications for T seconds) is PUBSUB_HISTORY in demo_project/settings.py.
ws.register_pubsub_route("/ws/live", permissions=[
    {"pattern": "news", "subscribe": "anyone", "publish": "nobody"},  # only the server publishes
    {"pattern": "room.*", "subscribe": "authenticated", "publish": "authenticated", "presence": "authenticated"},
    {"pattern": "user:{user_id}", "subscribe": "user"},
])
