"""Presence: who is in a group, cluster-wide, and coalesced join/leave events (docs/presence.md).

* :mod:`rockstar_ws.presence.store`: :class:`LocalPresenceStore` (one process) and
  :class:`RedisPresenceStore` (every process, in Redis, with per-process heartbeats).
* :mod:`rockstar_ws.presence.events`: :class:`PresenceCoalescer`, at most one update per group
  per interval, per user.
"""

from .events import DEFAULT_INTERVAL, PresenceCoalescer, PresenceUpdate
from .store import (
    DEFAULT_MAX_INFO_BYTES,
    InfoTooLarge,
    LocalPresenceStore,
    Member,
    PresenceError,
    PresenceStats,
    PresenceStore,
    RedisPresenceStore,
)

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_INFO_BYTES",
    "InfoTooLarge",
    "LocalPresenceStore",
    "Member",
    "PresenceCoalescer",
    "PresenceError",
    "PresenceStats",
    "PresenceStore",
    "PresenceUpdate",
    "RedisPresenceStore",
]
