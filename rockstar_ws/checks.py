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
def check_auth(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The session source without an origin check, and auth settings of the wrong type."""
    try:
        session, origins = ws_settings.AUTH_SESSION, ws_settings.AUTH_SESSION_ORIGINS
    except Exception:  # reported by check_settings
        return []
    errors: list[Any] = []
    if session and not origins:
        errors.append(Error(
            "ROCKSTAR_WS['AUTH_SESSION'] is on without AUTH_SESSION_ORIGINS: session cookies ride along on "
            "cross-site handshakes (cross-site WebSocket hijacking).",
            hint="Set ROCKSTAR_WS['AUTH_SESSION_ORIGINS'] to the origins of your pages, e.g. ['https://app.example.com'].",
            id="rockstar_ws.E010"))
    if isinstance(origins, str):
        errors.append(Error("ROCKSTAR_WS['AUTH_SESSION_ORIGINS'] must be a list, not a string.",
                            hint="Write ['https://app.example.com'].", id="rockstar_ws.E011"))
    for key in ("AUTH_QUERY_PARAM", "AUTH_SUBPROTOCOL", "AUTH_SCOPE_CLAIM", "AUTH_SCOPES_CLAIM", "AUTH_TENANT_CLAIM"):
        value = getattr(ws_settings, key)
        if value is not None and (not isinstance(value, str) or not value):
            errors.append(Error(f"ROCKSTAR_WS[{key!r}] must be a non-empty string or None, not {value!r}.",
                                id="rockstar_ws.E012"))
    return errors
