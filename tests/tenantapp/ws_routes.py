"""Routes the tenant tests drive (only in tests.tenant_settings)."""

from __future__ import annotations

import json

from rockstar_ws import Context, WebSocketConnection
from rockstar_ws import default_server as ws
from rockstar_ws.tenants import propagation
from tests.testapp.ws_routes import EVENTS, record


def _tenant(ctx: Context) -> dict:
    t = ctx.tenant
    return None if t is None else {"identifier": t.identifier, "name": t.name, "obj": t.obj,
                                   "settings": dict(t.settings)}


async def whoami(ctx: Context, conn: WebSocketConnection) -> None:
    record(f"whoami:{ctx.route.path}:{ctx.request.tenant_id}")
    await conn.write_json({"tenant_id": ctx.request.tenant_id, "tenant": _tenant(ctx),
                           "user_id": ctx.request.user_id, "host": ctx.request.host})
    async for _t, data in conn:
        await conn.write_message(1, f"[{ctx.request.tenant_id}] {data}")


# Authenticated on tenant1's host only, like the demo's /ws/admin, but recording that it ran.
ws.register_authenticated_host_route("tenant1.localhost", "/ws/tt/admin", whoami, None, ["admin:access"])
# Authenticated on every host; a token holding staff:all may open it on any tenant's host.
ws.register_authenticated_route("/ws/tt/staff", whoami, cross_tenant_scopes=["staff:all"])
# Declared by tenant rather than by host.
ws.register_route("/ws/tt/only-tenant2", whoami, tenant="tenant2")


@ws.route("/ws/tt/probe")
async def probe(ctx: Context, conn: WebSocketConnection) -> None:
    async for _t, data in conn:
        q = json.loads(data)["get"]
        if q == "control-joined":
            await conn.write_json(propagation._control.joined.is_set())
        elif q == "events":
            await conn.write_json(EVENTS)
        elif q == "resolver-calls":
            await conn.write_json(ctx.server.tenant_resolver.calls)


# Open to every host: shows the tenant a global route sees.
ws.register_route("/ws/tt/whoami", whoami)
