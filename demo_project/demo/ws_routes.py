"""The reference's examples, registered on the default server (autodiscovered at start-up)."""

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

from rockstar_ws import Context, InvalidGroupName, TextMessage, WebSocketConnection
from rockstar_ws import default_server as ws
from rockstar_ws.presence import PresenceUpdate
from rockstar_ws.presence.service import connection_id, presence_json

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
# message reaches every client of the room, the sender too, in every server process. Its
# members are listed by ws.presence("chat") (a name from the login or ?name=); presence lines
# come in-band only to clients that ask with ?presence=1, since the reference's clients expect
# nothing but the room's messages.
@ws.route("/ws/chat")
async def chat(ctx: Context, conn: WebSocketConnection) -> None:
    name = _member_name(ctx, default="guest")
    if name is None:
        await conn.close(4400, "invalid name: 1 to 40 printable characters")
        return
    on_presence = None
    if ctx.request.query_param("presence") == "1":
        async def on_presence(update: PresenceUpdate) -> None:
            await conn.write_message(TextMessage, presence_json(update))
    await conn.join("chat", presence=True, info=name, on_presence=on_presence)  # left when it ends
    async for message_type, data in conn:
        await ws.broadcast("chat", message_type, data)


#: Members a room's welcome lists by name; a bigger room is announced by its counts only, since
#: listing 2,000 members to each of 2,000 joiners is the quadratic cost presence avoids.
WELCOME_LIST_LIMIT = 100
_MAX_NAME = 40


def _member_name(ctx: Context, default: str | None = None) -> dict[str, Any] | None:
    """The public info of a member: a logged-in user's username, or the name a guest chose
    (``?name=``, 1 to 40 printable characters); None for a guest name that is not valid."""
    user = getattr(ctx, "user", None)
    if getattr(user, "is_authenticated", False):
        return {"name": user.get_username(), "guest": False}
    name = (ctx.request.query_param("name") or default or "").strip()
    if not name or len(name) > _MAX_NAME or any(unicodedata.category(c)[0] in "CZ" and c != " " for c in name):
        return None
    return {"name": name, "guest": True}


def _room_group(ctx: Context, room: str) -> str:
    # Rooms of a tenant's hosts are that tenant's: its members never list another tenant's.
    tenant = ctx.request.tenant_id
    return f"room.{room}" if tenant is None else f"t.{tenant}.room.{room}"


# Rooms for the browser chat at /chat/<room>/: JSON in ({"text"}), JSON out to the room. Who is
# in the room comes from presence: a welcome with the members, then coalesced updates (at most
# one a second, per user: a second tab is not a join) saying who joined and who left.
# Anything that is not JSON closes the connection with 1007 (conn.read_json).
@ws.route("/ws/rooms/<slug:room>")
async def chat_room(ctx: Context, conn: WebSocketConnection) -> None:
    room = ctx.request.path_params["room"]
    info = _member_name(ctx)
    if info is None:
        await conn.close(4400, "a guest needs a name: ?name= with 1 to 40 printable characters")
        return
    group = _room_group(ctx, room)

    async def on_presence(update: PresenceUpdate) -> None:
        await conn.write_message(TextMessage, presence_json(update))

    try:
        await conn.join(group, presence=True, info=info, on_presence=on_presence)
    except InvalidGroupName:
        await conn.close(4400, "room name too long")
        return
    stats = await ws.presence_stats(group)
    members = await ws.presence(group) if stats.users <= WELCOME_LIST_LIMIT else []
    await conn.write_json({"type": "welcome", "room": room, "you": connection_id(conn), "name": info["name"],
                           "connections": stats.connections, "users": stats.users,
                           "members": [m.public_dict() for m in members]})
    while True:
        # Not JSON, or nested too deep to parse: read_json closes with 1007 and raises
        # ConnectionClosed, which ends the handler (and leaves the room).
        body = await conn.read_json()
        if not isinstance(body, dict) or not str(body.get("text", "")).strip():
            continue
        await ws.broadcast(group, TextMessage, json.dumps({
            "type": "message", "name": info["name"], "guest": info["guest"], "text": str(body["text"])[:2000],
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }))


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
