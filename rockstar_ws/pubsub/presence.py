"""Presence on pub/sub subscriptions: the ``presence`` command and the join/leave pushes.

Decision: a subscription is *present* in its group when the group's rule declares a
``presence`` check (``room.*`` in the demo); groups without one (``news``) cost no presence
writes however many read them. ``presence: true`` in ``subscribe`` adds the join/leave pushes.

Presence goes through the server's presence interface (``conn.join(group, presence=True,
on_presence=...)``, ``server.presence(group)``) when the server has it; until then (the interface
is built on another branch) a process-local table stands in: counts and pushes then cover the
connections of this process only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rockstar_ws.pubsub.permissions import Principal
    from rockstar_ws.pubsub.service import Subscription
    from rockstar_ws.server import WebSocketServer

__all__ = ["presence_group", "stats", "watch"]


def presence_group(stream: str) -> str:
    """The group a stream's presence lives in: not the stream's hub group, whose members would
    get its publications straight from the hub, around the merge."""
    return "pp." + hashlib.blake2b(stream.encode(), digest_size=20).hexdigest()


def _has_interface(server: WebSocketServer) -> bool:
    return callable(getattr(server, "presence", None))


Watcher = Callable[[str, "str | None", str], Awaitable[None]]


class _Local:
    """Process-local stand-in: group -> {connection id: (user id, watcher or None)}."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, tuple[str | None, Watcher | None]]] = {}

    async def join(self, group: str, cid: str, user: str | None,
                   watcher: Watcher | None) -> None:
        members = self.groups.setdefault(group, {})
        first = user is None or all(u != user for u, _ in members.values())
        members[cid] = (user, watcher)
        if first:
            await self._tell(group, "join", user, cid, skip=cid)

    async def leave(self, group: str, cid: str) -> None:
        members = self.groups.get(group, {})
        entry = members.pop(cid, None)
        if not members:
            self.groups.pop(group, None)
        if entry is not None and (entry[0] is None or all(u != entry[0] for u, _ in members.values())):
            await self._tell(group, "leave", entry[0], cid, skip=cid)

    async def _tell(self, group: str, kind: str, user: str | None, cid: str, skip: str) -> None:
        for other, (_u, watcher) in list(self.groups.get(group, {}).items()):
            if watcher is not None and other != skip:
                await watcher(kind, user, cid)

    def stats(self, group: str) -> dict[str, Any]:
        members = self.groups.get(group, {})
        users = sorted({u for u, _ in members.values() if u is not None})
        return {"clients": len(members), "users": users}


def _local(server: WebSocketServer) -> _Local:
    table: _Local | None = getattr(server, "_pubsub_presence", None)
    if table is None:
        table = server._pubsub_presence = _Local()
    return table


async def watch(server: WebSocketServer, sub: Subscription, principal: Principal, *, pushes: bool) -> None:
    """Make ``sub`` present in its group; with ``pushes``, send its client the others' join/leave."""
    conn = sub.session.conn
    group = presence_group(sub.stream)
    cid = str(id(conn))

    async def push(kind: str, user: str | None, client: str) -> None:
        if pushes and sub.active:
            sub.session.send(json.dumps({"type": kind, "group": sub.group, "user": user, "client": client},
                                        separators=(",", ":")))

    if _has_interface(server):
        async def on_presence(update: Any) -> None:
            for m in update.joined:
                await push("join", m.user_id, m.connection_id)
            for m in update.left:
                await push("leave", m.user_id, m.connection_id)

        await conn.join(group, presence=True, on_presence=on_presence)  # type: ignore[call-arg]

        async def leave_interface() -> None:
            await conn.leave(group)
        sub.on_end.append(leave_interface)
        return
    table = _local(server)
    await table.join(group, cid, principal.user_id, push)

    async def leave_local() -> None:
        await table.leave(group, cid)
    sub.on_end.append(leave_local)


async def stats(server: WebSocketServer, sub: Subscription) -> dict[str, Any]:
    """The ``presence`` reply: ``{"clients": n, "users": [user ids]}``."""
    group = presence_group(sub.stream)
    if _has_interface(server):
        members = await server.presence(group)  # type: ignore[attr-defined]
        return {"clients": len(members), "users": sorted({m.user_id for m in members if m.user_id is not None})}
    return _local(server).stats(group)
