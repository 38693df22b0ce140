"""What the ``PUBSUB_HISTORY`` setting (or a route's ``history=``) says: the store, and N and T per pattern.

Shape (docs/pubsub.md, "Configuration")::

    "PUBSUB_HISTORY": {
        "GROUPS": [{"pattern": "news", "size": 100, "ttl": 300},
                   {"pattern": "room.*", "size": 50, "ttl": 60}],
        "REDIS": "redis://127.0.0.1:6379/0",   # absent: the live registry's Redis if any; None: memory
        "KEY_PREFIX": "rockstar_ws:history:",
        "META_TTL": 30 * 24 * 3600,
        "RECOVERY_LIMIT": 10000,
    }

A group no ``GROUPS`` pattern fits has no history: its publications carry no offset and a
subscription to it cannot recover. Patterns are written as permission patterns (``*``,
``{user_id}``, ``{tenant_id}``, which here match any text); the first that fits decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from rockstar_ws.pubsub.history import HistoryStore, history_store_from_config
from rockstar_ws.pubsub.permissions import Rule

__all__ = ["DEFAULT_RECOVERY_LIMIT", "HistoryPolicy", "HistoryRule"]

#: The most publications one recovery replays (LiveMerge.max_recovery); further behind: recovered false.
DEFAULT_RECOVERY_LIMIT = 10_000
_STORE_KEYS = ("REDIS", "KEY_PREFIX", "META_TTL")
_KEYS = (*_STORE_KEYS, "GROUPS", "RECOVERY_LIMIT")


@dataclass(frozen=True)
class HistoryRule:
    """Keep the last ``size`` publications of each group fitting ``pattern``, each for ``ttl`` seconds."""

    pattern: str
    size: int
    ttl: float

    def __post_init__(self) -> None:
        where = f"PUBSUB_HISTORY GROUPS entry {self.pattern!r}"
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ImproperlyConfigured(f"{where}: 'size' must be a whole number >= 1, got {self.size!r}")
        if isinstance(self.ttl, bool) or not isinstance(self.ttl, int | float) or not self.ttl > 0:
            raise ImproperlyConfigured(f"{where}: 'ttl' must be seconds > 0, got {self.ttl!r}")
        object.__setattr__(self, "_rule", Rule(self.pattern))  # validates the pattern's syntax

    def fits(self, group: str) -> bool:
        """True when ``group`` has the pattern's shape."""
        rule: Rule = object.__getattribute__(self, "_rule")
        return rule.fits(group)


class HistoryPolicy:
    """The history rules and store settings of one server (built from one ``PUBSUB_HISTORY`` dict)."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        config = dict(config or {})
        unknown = sorted(set(config) - set(_KEYS))
        if unknown:
            raise ImproperlyConfigured(
                f"unknown PUBSUB_HISTORY key(s) {unknown}; the keys are {', '.join(_KEYS)}")
        groups = config.get("GROUPS", [])
        if not isinstance(groups, list | tuple):
            raise ImproperlyConfigured(
                "PUBSUB_HISTORY['GROUPS'] must be a list like [{'pattern': 'news', 'size': 100, 'ttl': 300}]")
        rules: list[HistoryRule] = []
        for i, item in enumerate(groups):
            if not isinstance(item, Mapping) or set(item) != {"pattern", "size", "ttl"}:
                raise ImproperlyConfigured(
                    f"PUBSUB_HISTORY['GROUPS'][{i}] must be a dict with exactly 'pattern', 'size' and 'ttl', "
                    f"got {item!r}")
            try:
                rules.append(HistoryRule(item["pattern"], item["size"], item["ttl"]))
            except ImproperlyConfigured as exc:
                raise ImproperlyConfigured(f"PUBSUB_HISTORY['GROUPS'][{i}]: {exc}") from None
        limit = config.get("RECOVERY_LIMIT", DEFAULT_RECOVERY_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ImproperlyConfigured(f"PUBSUB_HISTORY['RECOVERY_LIMIT'] must be a whole number >= 1, got {limit!r}")
        self.rules: tuple[HistoryRule, ...] = tuple(rules)
        self.recovery_limit: int = limit
        self.store_config: dict[str, Any] = {k: config[k] for k in _STORE_KEYS if k in config}
        if rules:
            self.new_store()  # a bad REDIS / KEY_PREFIX shows at start-up, not at the first publish
            # (the client is lazy: building one opens no connection)

    def rule_for(self, group: str) -> HistoryRule | None:
        """The rule keeping ``group``'s history, or None (no history)."""
        for rule in self.rules:
            if rule.fits(group):
                return rule
        return None

    def new_store(self) -> HistoryStore:
        """A store as configured. ``REDIS`` absent means the live registry's Redis (the channel
        layer's first host), so processes sharing a Redis layer share one history by default."""
        config = dict(self.store_config)
        if "REDIS" not in config:
            from rockstar_ws.registry import registry_redis

            redis = registry_redis()  # a URL, or a Sentinel host dict
            if redis:
                config["REDIS"] = redis
            else:
                config.pop("KEY_PREFIX", None)  # in memory: a prefix has no meaning
        return history_store_from_config(config)

    @property
    def in_memory(self) -> bool:
        """True when the store is this process's memory (embedded mode)."""
        from rockstar_ws.pubsub.history import MemoryHistoryStore

        return isinstance(self.new_store(), MemoryHistoryStore)
