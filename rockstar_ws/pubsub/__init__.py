"""Subscriptions: per-group permissions, history with offsets and epochs, recovery after reconnect.

The pieces that do not depend on a connection: :mod:`.history` (where publications are kept),
:mod:`.recovery` (the catch-up/live merge without gap or duplicate) and :mod:`.permissions`
(who may subscribe, publish and see presence). The wire protocol is in docs/protocol.md.
"""

from rockstar_ws.pubsub.history import (
    HistoryStore,
    MemoryHistoryStore,
    Position,
    Publication,
    Recovery,
    RedisHistoryStore,
    history_store_from_config,
)
from rockstar_ws.pubsub.permissions import Action, Permissions, Principal, Refusal, RefusalCode, Rule, namespaced
from rockstar_ws.pubsub.recovery import CatchUp, LiveMerge, Unrecoverable

__all__ = [
    "Action",
    "CatchUp",
    "HistoryStore",
    "LiveMerge",
    "MemoryHistoryStore",
    "Permissions",
    "Position",
    "Principal",
    "Publication",
    "Recovery",
    "RedisHistoryStore",
    "Refusal",
    "RefusalCode",
    "Rule",
    "Unrecoverable",
    "history_store_from_config",
    "namespaced",
]
