"""Authenticated routes for tests/e2e/test_auth*.py (imported by ws_routes.py).

Their middleware and handler record ``auth-mw:<probe>`` / ``auth-handler:<probe>`` (``probe``
is a query parameter the test picks), so a test proves through /ws/test/probe that a refused
handshake never ran user code.
"""

from __future__ import annotations

from rockstar_ws import Context, TextMessage, WebSocketConnection
from rockstar_ws import default_server as ws
from rockstar_ws.auth.manager import SOURCE_KEY

from .ws_routes import record


async def recording_mw(ctx: Context, next):
    record(f"auth-mw:{ctx.request.query_param('probe', '-')}")
    return await next(ctx)


async def whoami(ctx: Context, conn: WebSocketConnection) -> None:
    """First message: what authentication put into the context; then ``User <id>: <text>``."""
    r = ctx.request
    record(f"auth-handler:{r.query_param('probe', '-')}")
    await conn.write_json({
        "user_id": r.user_id, "tenant_id": r.tenant_id, "scopes": sorted(r.scopes),
        "username": getattr(ctx.user, "username", None), "authenticated": ctx.user.is_authenticated,
        "token_type": r.claims.get("token_type"), "access_token_len": len(r.access_token or ""),
        "source": ctx.state.get(SOURCE_KEY), "subprotocol": conn.subprotocol,
    })
    async for _t, data in conn:
        await conn.write_message(TextMessage, f"User {r.user_id}: {data}")


def register(server=ws) -> None:
    """Register the auth test routes on ``server``."""
    server.register_authenticated_route("/ws/test/auth/any", whoami, [recording_mw],
                                        allowed_scopes=["chat:read", "chat:write"])
    server.register_authenticated_route("/ws/test/auth/all", whoami, [recording_mw],
                                        allowed_scopes=["chat:read", "chat:write"], require_all_scopes=True)
    server.register_authenticated_route("/ws/test/auth/open", whoami, [recording_mw])
    server.register_authenticated_route("/ws/test/auth/write", whoami, [recording_mw], allowed_scopes=["chat:write"])


register()
