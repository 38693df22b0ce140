"""Broadcast groups that span every server process, with one channel-layer message per process.

A handler joins a group (``await conn.join("room.lobby")``) and anyone broadcasts to it
(``await server.broadcast("room.lobby", TextMessage, "hi")``, or ``server.broadcast_sync(...)``
from Django views, signals and management commands). See docs/broadcast.md.

How a broadcast travels:

* Each server process that has members has one :class:`GroupHub` (per ``WebSocketServer``),
  created when its first connection joins a group. The hub owns one *node channel*
  (``layer.new_channel()``) and, for every group that has local members, that channel is the
  process's single member of the channel-layer group ``rockstar.<server>.<group>``.
* ``broadcast()`` writes to the local members at once, then hands the message to the hub's
  publisher, which sends **one** layer message per group to the layer group (so one Redis write
  per process with members, whatever the number of members). Consecutive messages for the same
  group that queued up while a send was in flight travel together in one layer message.
* Every process's receive loop takes messages off its node channel, drops its own (it has
  delivered them already: exactly once per member) and writes them to its local members.
* With the in-memory layer (one process) or no layer the layer is skipped entirely.

Slow clients: on daphne, ``send`` never waits (Twisted buffers without bound), so members are
written directly in order and daphne's buffer for each client is checked against
``GROUP_MAX_BUFFERED_BYTES``. On other servers ``send`` waits for the socket, so each member gets a
writer task fed by a queue of at most ``GROUP_QUEUE_SIZE`` messages and ``GROUP_MAX_BUFFERED_BYTES``
bytes (queued, plus what the server holds unsent where the bridge can see it), and one write may
wait at most ``WRITE_TIMEOUT``. Over any limit, ``GROUP_OVERFLOW`` decides: ``"close"`` (close code
1013) or ``"drop"`` (skip the message).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.outage import outage
from ..layers import crosses_processes
from .encoding import MESSAGE_TYPE, payload, ws_message
from .hub import GroupHub, counts_backend, read_counts
from .names import (
    MAX_GROUP_NAME_LENGTH,
    BroadcastError,
    InvalidGroupName,
    is_group_name,
    layer_group_name,
    validate_group_name,
)

if TYPE_CHECKING:
    from ..engine.server import WebSocketServer

__all__ = [
    "MAX_GROUP_NAME_LENGTH",
    "BroadcastError",
    "GroupHub",
    "InvalidGroupName",
    "broadcast",
    "broadcast_many",
    "current_hub",
    "group_size",
    "hub_for",
    "is_group_name",
    "layer_group_name",
    "validate_group_name",
]

logger = logging.getLogger("rockstar_ws.groups")


#: Each server's hub. Kept here, not on the server: the engine knows groups, not the other way round.
_hubs: weakref.WeakKeyDictionary[WebSocketServer, GroupHub] = weakref.WeakKeyDictionary()


def hub_for(server: WebSocketServer) -> GroupHub:
    """The server's hub on the running loop (created on first use by a joining connection)."""
    loop = asyncio.get_running_loop()
    hub: GroupHub | None = _hubs.get(server)
    if hub is None or hub.loop is not loop:
        if hub is not None and not hub.loop.is_closed() and hub.loop.is_running():
            raise RuntimeError("Connections of one WebSocketServer must be served by one event loop")
        hub = GroupHub(server, loop)
        _hubs[server] = hub
    return hub


def current_hub(server: WebSocketServer) -> GroupHub | None:
    """The server's hub if one exists on the running loop (i.e. this process has had members)."""
    hub: GroupHub | None = _hubs.get(server)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return hub if hub is not None and hub.loop is loop else None


async def broadcast(server: WebSocketServer, group: str, message_type: int, data: str | bytes,
                    exclude: Any = None, *, strict: bool = False) -> int:
    """``server.broadcast()``: through the hub when this loop serves members, else straight to the layer."""
    hub = current_hub(server)
    if hub is not None:
        return await hub.broadcast(group, message_type, data, exclude, strict=strict)
    validate_group_name(group)
    lg = layer_group_name(server.name, group)
    msg = ws_message(message_type, data)
    other: GroupHub | None = _hubs.get(server)
    if other is not None and other.loop.is_running() and not other.loop.is_closed():
        # Called from another thread of a server process (e.g. a sync view): hand it to the hub.
        fut = asyncio.run_coroutine_threadsafe(other.broadcast(group, message_type, data, exclude, strict=strict),
                                               other.loop)
        return await asyncio.wrap_future(fut)
    layer = server.channel_layer
    if not crosses_processes(layer):
        logger.warning("broadcast to group %r reaches nobody: this process has no members and the channel "
                       "layer (%s) does not cross processes", group, type(layer).__name__ if layer else "none")
        return 0
    message = {"type": MESSAGE_TYPE, "origin": "", "group": group, "items": [payload(msg)]}
    try:
        await layer.group_send(lg, message)
    except Exception as exc:
        outage.failed("channel layer", f"broadcasting to group {group!r}", exc, holds=False, log=logger)
        outage.count("broadcasts not sent")
        if strict:
            raise BroadcastError(f"broadcast to {group!r} not sent: {exc!r}") from exc
    return 0


async def broadcast_many(server: WebSocketServer, group: str, message_type: int,
                         items: Sequence[str | bytes]) -> list[int]:
    """Broadcast each of ``items`` to ``group`` in order: through the hub without yielding to the
    loop between messages (see :meth:`GroupHub.broadcast_many`), else one :func:`broadcast` each.
    Returns the local members written to, per message."""
    hub = current_hub(server)
    if hub is not None:
        return await hub.broadcast_many(group, message_type, items)
    return [await broadcast(server, group, message_type, data) for data in items]


async def group_size(server: WebSocketServer, group: str, *, strict: bool = False) -> int:
    """``server.group_size()``: members in every process."""
    hub: GroupHub | None = _hubs.get(server)
    loop = asyncio.get_running_loop()
    if hub is not None and hub.loop is not loop and not (hub.loop.is_running() and not hub.loop.is_closed()):
        hub = None
    if hub is not None and hub.loop is not loop:  # another thread of a server process
        fut = asyncio.run_coroutine_threadsafe(hub.cluster_size(group, strict=strict), hub.loop)
        return await asyncio.wrap_future(fut)
    if hub is not None:
        return await hub.cluster_size(group, strict=strict)
    validate_group_name(group)
    layer = server.channel_layer
    if not crosses_processes(layer) or not counts_backend(layer):
        return 0
    try:
        return await read_counts(layer, layer_group_name(server.name, group))
    except BroadcastError as exc:
        if strict:
            raise
        outage.failed("channel layer", "reading member counts", exc, holds=False, log=logger)
        return 0
