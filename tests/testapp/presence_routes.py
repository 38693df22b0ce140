"""Routes the presence tests drive (imported by ws_routes.py).

``/ws/test/presence/<group>`` (guests; ``?name=``) and ``/ws/test/presence-auth/<group>`` (any
valid access token) join ``group`` with presence and, unless ``?events=0``, relay every presence
update as ``{"reply": "presence", "group", "joined", "left"}``. Commands (JSON): ``{"op": "list"}``,
``{"op": "stats"}``, ``{"op": "list_sync"}`` (the sync twin, from a worker thread), ``{"op":
"leave"}``, ``{"op": "rejoin", "info": {...}}`` and ``{"op": "bad", "case": ...}`` (a join the API
must refuse; the reply names the error).
"""

from __future__ import annotations

import json

from asgiref.sync import sync_to_async

from rockstar_ws import Context, WebSocketConnection
from rockstar_ws import default_server as ws
from rockstar_ws.presence import PresenceUpdate
from rockstar_ws.presence.service import connection_id

_BAD = {
    "info-without-presence": {"info": {"name": "x"}},
    "info-too-big": {"presence": True, "info": {"name": "x" * 600}},
    "info-not-a-dict": {"presence": True, "info": ["x"]},
}


async def presence_driver(ctx: Context, conn: WebSocketConnection) -> None:
    group = ctx.request.path_params["group"]
    info = {"name": ctx.request.query_param("name") or "anon"}

    async def relay(update: PresenceUpdate) -> None:
        await conn.write_json({"reply": "presence", **update.as_dict()})

    on_presence = None if ctx.request.query_param("events") == "0" else relay
    await conn.join(group, presence=True, info=info, on_presence=on_presence)
    await conn.write_json({"reply": "ready", "id": connection_id(conn), "user_id": ctx.request.user_id})
    async for _t, data in conn:
        cmd = json.loads(data)
        op = cmd["op"]
        if op == "list":
            await conn.write_json({"reply": "list", "members": [m.public_dict() for m in await ws.presence(group)]})
        elif op == "list_sync":
            members = await sync_to_async(ws.presence_sync, thread_sensitive=False)(group)
            stats = await sync_to_async(ws.presence_stats_sync, thread_sensitive=False)(group)
            await conn.write_json({"reply": "list_sync", "members": [m.public_dict() for m in members],
                                   "stats": list(stats)})
        elif op == "stats":
            stats = await ws.presence_stats(group)
            await conn.write_json({"reply": "stats", "connections": stats.connections, "users": stats.users})
        elif op == "leave":
            await conn.leave(group)
            await conn.write_json({"reply": "left"})
        elif op == "rejoin":
            await conn.join(group, presence=True, info=cmd["info"], on_presence=on_presence)
            await conn.write_json({"reply": "rejoined"})
        elif op == "bad":
            try:
                await conn.join(f"{group}.bad", **_BAD[cmd["case"]])
            except (TypeError, ValueError) as exc:
                await conn.write_json({"reply": "refused", "error": f"{type(exc).__name__}: {exc}",
                                       "groups": sorted(conn.groups)})
            else:
                await conn.write_json({"reply": "accepted"})


ws.register_route("/ws/test/presence/<str:group>", presence_driver)
ws.register_authenticated_route("/ws/test/presence-auth/<str:group>", presence_driver)
