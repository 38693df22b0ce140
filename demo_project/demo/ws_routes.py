"""The reference's examples, registered on the default server (autodiscovered at start-up)."""

from rockstar_ws import Context, TextMessage, WebSocketConnection
from rockstar_ws import default_server as ws

from .middleware import ws_logging_middleware


# Simple Echo Server: text and binary come back with their type.
@ws.route("/ws/echo")
async def echo(ctx: Context, conn: WebSocketConnection) -> None:
    while True:
        message_type, data = await conn.read_message()  # raises ConnectionClosed when the client goes
        await conn.write_message(message_type, data)


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


# The global /ws/chat (any other host): the lookup order sends tenant hosts to the routes above.
@ws.route("/ws/chat")
async def chat(ctx: Context, conn: WebSocketConnection) -> None:
    async for message_type, data in conn:
        await conn.write_message(message_type, data)


# Authenticated WebSocket: only access tokens with the chat:write scope get in (alice, not bob).
async def private_handler(ctx: Context, conn: WebSocketConnection) -> None:
    user_id = ctx.request.user_id
    async for _message_type, data in conn:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        await conn.write_message(TextMessage, f"User {user_id}: {text}")


ws.register_authenticated_route("/ws/private", private_handler, allowed_scopes=["chat:write"])
