"""Group names: what a group may be called, and the channel-layer group that carries it."""

from __future__ import annotations

import re

__all__ = ["MAX_GROUP_NAME_LENGTH", "BroadcastError", "InvalidGroupName", "is_group_name", "layer_group_name",
           "validate_group_name"]

#: Longest group name accepted (the channel layer allows 99 characters for the whole layer group).
MAX_GROUP_NAME_LENGTH = 80
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_LAYER_NAME_LIMIT = 99  # channels' BaseChannelLayer.MAX_NAME_LENGTH is 100, exclusive


class InvalidGroupName(ValueError):
    """A group name the channel layer cannot carry (characters or length)."""


class BroadcastError(RuntimeError):
    """A broadcast (or a cluster-wide count) could not reach the channel layer.

    Raised only by the strict variants (``strict=True``, :meth:`GroupHub.cluster_size`); the
    default ``broadcast()`` logs the failure at ERROR level and keeps the caller running.
    """


def is_group_name(group: str) -> bool:
    """Whether ``group`` has only the characters a group name may have (length not checked)."""
    return bool(_NAME_RE.match(group))


def validate_group_name(group: str) -> str:
    """Return ``group`` if it is a valid group name, else raise :class:`InvalidGroupName`.

    Valid: 1 to 80 ASCII letters, digits, hyphens, underscores or periods (what every Channels
    layer accepts), e.g. ``"room.lobby"`` or ``"user-42"``.
    """
    if not isinstance(group, str):
        raise InvalidGroupName(f"Group name must be a str, not {type(group).__name__}")
    if not group or len(group) > MAX_GROUP_NAME_LENGTH:
        raise InvalidGroupName(f"Group name must have 1 to {MAX_GROUP_NAME_LENGTH} characters, "
                               f"got {len(group)}: {group[:40]!r}")
    if not _NAME_RE.match(group):
        raise InvalidGroupName(f"Group name {group!r} may contain only ASCII letters, digits, '-', '_' and '.' "
                               "(e.g. 'room.lobby'); use a hash or an id for other names")
    return group


def layer_group_name(server_name: str, group: str) -> str:
    """The channel-layer group a process's node channel joins for ``group``."""
    name = f"rockstar.{server_name}.{group}"
    if len(name) > _LAYER_NAME_LIMIT or not _NAME_RE.match(name):
        raise InvalidGroupName(f"Group {group!r} on server {server_name!r} makes the layer group name {name!r}, "
                               f"which the channel layer refuses (max {_LAYER_NAME_LIMIT} characters of "
                               "letters, digits, '-', '_', '.'); use a shorter group or server name")
    return name
