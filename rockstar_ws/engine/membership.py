"""What a connection's ``join``/``leave``/``subscribe`` do: the group hub, presence and pub/sub
composed (the engine knows every feature; ``core.connection`` knows none of them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..groups import hub_for
from ..presence.service import leave_presence, prepare_join

if TYPE_CHECKING:
    from ..core.connection import WebSocketConnection
    from .server import WebSocketServer

__all__ = ["Membership"]


class Membership:
    """The :class:`~rockstar_ws.core.connection.GroupMembership` of ``server``'s connections."""

    __slots__ = ("server",)

    def __init__(self, server: WebSocketServer) -> None:
        self.server = server

    async def join(self, conn: WebSocketConnection, group: str, *, presence: bool = False,
                   info: dict[str, Any] | None = None,
                   on_presence: Callable[[Any], Awaitable[None]] | None = None) -> None:
        # Presence arguments are checked before the group join.
        presence_join = prepare_join(conn, group, presence, info, on_presence)
        was_member = group in conn.groups
        await hub_for(self.server).join(conn, group)
        if presence_join is not None:
            try:
                await presence_join()
            except BaseException:
                if not was_member:  # a refused presence join leaves no half-join behind
                    await hub_for(self.server).leave(conn, group)
                raise

    async def leave(self, conn: WebSocketConnection, group: str) -> None:
        await hub_for(self.server).leave(conn, group)
        await leave_presence(conn, group)

    async def subscribe(self, conn: WebSocketConnection, group: str, *, since: Any = None,
                        on_publication: Any = None) -> Any:
        from ..pubsub.route import subscribe

        return await subscribe(conn, group, since=since, on_publication=on_publication)
