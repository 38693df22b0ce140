"""Presence on pub/sub subscriptions: the ``presence`` command and the join/leave pushes.

Decision: a subscription is *present* in its group when the group's rule declares a
``presence`` check (``room.*`` in the demo); groups without one (``news``) cost no presence
writes however many read them. ``presence: true`` in ``subscribe`` adds the join/leave pushes.

Both go through the server's presence interface (docs/presence.md): the connection joins the
stream's presence group with ``conn.join(group, presence=True, on_presence=...)``, so listings
are cluster-wide and updates coalesced per user (a second tab is no join, the last tab leaving
is the leave).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rockstar_ws.engine.server import WebSocketServer
    from rockstar_ws.pubsub.permissions import Principal
    from rockstar_ws.pubsub.service import Subscription

__all__ = ["presence_group", "stats", "watch"]


def presence_group(stream: str) -> str:
    """The group a stream's presence lives in: not the stream's hub group, whose members would
    get its publications straight from the hub, around the merge."""
    return "pp." + hashlib.blake2b(stream.encode(), digest_size=20).hexdigest()


async def watch(server: WebSocketServer, sub: Subscription, principal: Principal, *, pushes: bool) -> None:
    """Make ``sub`` present in its group; with ``pushes``, send its client the others' join/leave."""
    conn = sub.session.conn
    group = presence_group(sub.stream)

    async def push(kind: str, user: str | None, client: str) -> None:
        if sub.active:
            sub.session.send(json.dumps({"type": kind, "group": sub.group, "user": user, "client": client},
                                        separators=(",", ":")))

    async def on_presence(update: Any) -> None:
        for m in update.joined:
            await push("join", m.user_id, m.connection_id)
        for m in update.left:
            await push("leave", m.user_id, m.connection_id)

    await conn.join(group, presence=True, on_presence=on_presence if pushes else None)

    async def leave() -> None:
        await conn.leave(group)
    sub.on_end.append(leave)


async def stats(server: WebSocketServer, sub: Subscription) -> dict[str, Any]:
    """The ``presence`` reply: ``{"clients": n, "users": [user ids]}``."""
    members = await server.presence(presence_group(sub.stream))
    return {"clients": len(members), "users": sorted({m.user_id for m in members if m.user_id is not None})}
