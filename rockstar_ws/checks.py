"""Django system checks for rockstar_ws (ids ``rockstar_ws.E0xx`` / ``W0xx``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Info, Warning, register

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


# -- protection (docs/protection.md) --------------------------------------------------------
_NUMERIC_LIMITS = ("MAX_MESSAGE_SIZE", "MESSAGE_RATE", "MESSAGE_BURST", "HANDSHAKE_RATE", "HANDSHAKE_BURST",
                   "IDLE_TIMEOUT", "WRITE_TIMEOUT", "WRITE_BUFFER_LIMIT")
DAPHNE_MAX_MESSAGE_SIZE = 1024 * 1024


def _mentions(value: Any, word: str) -> bool:
    if isinstance(value, str):
        return word in value.lower()
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_mentions(v, word) for v in value)
    if isinstance(value, dict):
        return any(_mentions(k, word) and bool(v) for k, v in value.items())
    return False


def _setting_enables(word: str) -> str | None:
    """The ROCKSTAR_WS key that turns on a token source named ``word`` ("session", "query"), if any.

    Authentication settings are another module's; this reads whatever is there: a truthy key
    whose name contains the word (``SESSION_AUTH``, ``ALLOW_QUERY_TOKEN``) or a list of sources
    naming it (``TOKEN_SOURCES = ["query", "header"]``).
    """
    user = ws_settings.user_settings
    for key in sorted(user):
        value = user[key]
        if word.upper() in key and value:
            return key
        if "SOURCE" in key and _mentions(value, word):
            return key
    return None


def _allows_every_origin() -> str | None:
    allowed = ws_settings.ALLOWED_ORIGINS
    if allowed is not None:
        return "ROCKSTAR_WS['ALLOWED_ORIGINS']" if "*" in allowed else None
    return "ALLOWED_HOSTS (ALLOWED_ORIGINS is not set)" if "*" in settings.ALLOWED_HOSTS else None


@register("rockstar_ws", "security")
def check_protection(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Dangerous protection settings: every origin with session auth, query tokens in
    production, limits switched off, limits the ASGI server overrides."""
    try:
        _ = ws_settings.user_settings
    except Exception:
        return []  # reported as rockstar_ws.E001
    out: list[Any] = []
    for name in _NUMERIC_LIMITS:
        value = getattr(ws_settings, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            out.append(Error(f"ROCKSTAR_WS['{name}'] is {value!r}", hint="Use a number >= 0 (0 switches it off).",
                             id="rockstar_ws.E101"))
    from .upgrader import RATE_LIMIT_POLICIES

    if ws_settings.RATE_LIMIT_POLICY not in RATE_LIMIT_POLICIES:
        out.append(Error(f"ROCKSTAR_WS['RATE_LIMIT_POLICY'] is {ws_settings.RATE_LIMIT_POLICY!r}",
                         hint=f"Use one of {', '.join(RATE_LIMIT_POLICIES)}.", id="rockstar_ws.E102"))
    if out:
        return out
    every = _allows_every_origin()
    if every and ws_settings.CHECK_ORIGIN is None:
        session_key = _setting_enables("session")
        session_mw = "django.contrib.sessions.middleware.SessionMiddleware" in (settings.MIDDLEWARE or ())
        if session_key or session_mw:
            why = f"ROCKSTAR_WS['{session_key}']" if session_key else "SessionMiddleware"
            out.append(Error(
                f"{every} admits every origin while browsers authenticate with a session cookie ({why}): "
                "any web site can open a WebSocket as your logged-in users (cross-site WebSocket hijacking).",
                hint="List your sites in ROCKSTAR_WS['ALLOWED_ORIGINS'] (e.g. ['https://app.example.com']).",
                id="rockstar_ws.E103"))
    query_key = _setting_enables("query")
    if query_key and not settings.DEBUG:
        out.append(Warning(
            f"ROCKSTAR_WS['{query_key}'] accepts tokens in the query string while DEBUG is False: "
            "tokens end up in proxy access logs and browser history.",
            hint="Send tokens in the Authorization header or a subprotocol, and switch query tokens off.",
            id="rockstar_ws.W101"))
    off = [n for n in ("MAX_MESSAGE_SIZE", "MESSAGE_RATE", "HANDSHAKE_RATE") if not getattr(ws_settings, n)]
    if not (ws_settings.WRITE_TIMEOUT or ws_settings.WRITE_BUFFER_LIMIT):
        off.append("WRITE_TIMEOUT and WRITE_BUFFER_LIMIT")
    if off and not settings.DEBUG:
        out.append(Warning(
            f"Protection limits are switched off: {', '.join(off)}. One client can then exhaust the process.",
            hint="Keep the defaults (docs/protection.md) or set limits that fit your traffic.",
            id="rockstar_ws.W102"))
    if ws_settings.MAX_MESSAGE_SIZE == 0 or ws_settings.MAX_MESSAGE_SIZE > DAPHNE_MAX_MESSAGE_SIZE:
        out.append(Info(
            f"ROCKSTAR_WS['MAX_MESSAGE_SIZE'] is {ws_settings.MAX_MESSAGE_SIZE}: daphne still refuses messages "
            f"over {DAPHNE_MAX_MESSAGE_SIZE} bytes (1009) unless started with --websocket-max-message-size "
            "and --websocket-max-frame-size.",
            id="rockstar_ws.I101"))
    return out
