"""Routes the broadcast-group tests drive (imported by ws_routes.py).

``/ws/test/group/<group>`` joins ``group`` (unless ``?join=0``) and obeys JSON commands:
``{"op": "say", "data": str, "repeat": n, "pad": bytes, "exclude_self": bool, "strict": bool}``
broadcasts (``data`` with ``pad`` spaces appended, ``repeat`` times), ``{"op": "join"|"leave",
"group": g}``, ``{"op": "size"}`` and ``{"op": "stats"}``. Replies are JSON objects with a
``"reply"`` key; broadcasts arrive exactly as sent.
"""

from __future__ import annotations

import json

from rockstar_ws import BroadcastError, Context, InvalidGroupName, TextMessage, WebSocketConnection
from rockstar_ws import default_server as ws
from rockstar_ws.groups import current_hub


@ws.route("/ws/test/group/<str:group>")
async def group_driver(ctx: Context, conn: WebSocketConnection) -> None:
    group = ctx.request.path_params["group"]
    if ctx.request.query_param("join", "1") != "0":
        try:
            await conn.join(group)
        except InvalidGroupName as exc:
            await conn.write_json({"reply": "invalid", "error": str(exc)})
            return
    await conn.write_json({"reply": "ready"})
    async for _t, data in conn:
        cmd = json.loads(data)
        op = cmd["op"]
        if op == "say":
            text = cmd["data"] + " " * int(cmd.get("pad", 0))
            sent = 0
            try:
                for _ in range(int(cmd.get("repeat", 1))):
                    sent += await ws.broadcast(cmd.get("group", group), TextMessage, text,
                                               exclude=conn if cmd.get("exclude_self") else None,
                                               strict=bool(cmd.get("strict")))
            except BroadcastError as exc:
                await conn.write_json({"reply": "error", "error": str(exc)})
                continue
            if cmd.get("ack"):
                await conn.write_json({"reply": "said", "local": sent})
        elif op in ("join", "leave"):
            try:
                await getattr(conn, op)(cmd["group"])
            except InvalidGroupName as exc:
                await conn.write_json({"reply": "invalid", "error": str(exc)})
                continue
            await conn.write_json({"reply": op, "groups": sorted(conn.groups)})
        elif op == "size":
            g = cmd.get("group", group)
            await conn.write_json({"reply": "size", "cluster": await ws.group_size(g),
                                   "local": ws.local_group_size(g)})
        elif op == "stats":
            hub = current_hub(ws)
            queued = [len(m.queue) for m in hub._members.values()] if hub else []
            from rockstar_ws.core.outage import outage

            await conn.write_json({"reply": "stats", "groups": hub.stats if hub else {}, "queued": queued,
                                   "closed": {str(k): v for k, v in ws.stats.closed_total.items()},
                                   "outage_failing": sorted(outage.failing)})


def sync_group_driver(ctx: Context, conn) -> None:
    """A plain ``def`` handler: joins through the SyncConnection, relays with broadcast_sync."""
    group = ctx.request.path_params["group"]
    conn.join(group)
    conn.write_message(TextMessage, json.dumps({"reply": "ready"}))
    for _t, data in conn:
        ws.broadcast_sync(group, TextMessage, data, exclude=conn)


ws.register_route("/ws/test/sync-group/<str:group>", sync_group_driver)
