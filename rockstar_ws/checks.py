"""Django system checks for rockstar_ws (ids ``rockstar_ws.E0xx`` / ``W0xx``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

from .conf import ws_settings


@register("rockstar_ws")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Unknown keys, a bad refusal mode, a missing channel layer."""
    errors: list[Any] = []
    try:
        _ = ws_settings.user_settings
    except Exception as exc:
        return [Error(str(exc), id="rockstar_ws.E001", hint="Fix the key names in settings.ROCKSTAR_WS.")]
    if ws_settings.REFUSAL_MODE not in ("http", "close"):
        errors.append(Error(f"ROCKSTAR_WS['REFUSAL_MODE'] is {ws_settings.REFUSAL_MODE!r}",
                            hint="Use 'http' or 'close'.", id="rockstar_ws.E002"))
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    if ws_settings.CHANNEL_LAYER not in layers:
        errors.append(Warning(
            f"No channel layer {ws_settings.CHANNEL_LAYER!r} in CHANNEL_LAYERS: broadcast stays in one process.",
            hint="Add CHANNEL_LAYERS (channels_redis.core.RedisChannelLayer for several processes).",
            id="rockstar_ws.W001"))
    return errors


@register("rockstar_ws")
def check_group_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Broadcast group settings (docs/broadcast.md)."""
    try:
        overflow = ws_settings.GROUP_OVERFLOW
    except Exception:  # unknown keys are reported by check_settings
        return []
    errors: list[Any] = []
    if overflow not in ("close", "drop"):
        errors.append(Error(f"ROCKSTAR_WS['GROUP_OVERFLOW'] is {overflow!r}", hint="Use 'close' or 'drop'.",
                            id="rockstar_ws.E060"))
    layer = (getattr(settings, "CHANNEL_LAYERS", {}) or {}).get(ws_settings.CHANNEL_LAYER) or {}
    if layer.get("BACKEND") == "channels_redis.core.RedisChannelLayer":
        hosts = (layer.get("CONFIG") or {}).get("hosts") or [None]
        if not all(isinstance(h, dict) and (h.get("socket_timeout") or 0) > 5 for h in hosts):
            errors.append(Warning(
                "channels-redis with redis-py's default 5 s socket_timeout: receivers time out during "
                "channels-redis' 5 s blocking pop, and a message popped at that moment is lost.",
                hint="Use BACKEND 'rockstar_ws.layers.RedisChannelLayer', or give each host a dict with "
                     "'socket_timeout': 30 (see docs/broadcast.md).", id="rockstar_ws.W060"))
    return errors
