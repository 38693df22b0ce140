"""Django system checks for rockstar_ws (ids ``rockstar_ws.E0xx`` / ``W0xx``).

The errors among them also stop a server at start: :func:`raise_for_configuration_errors`
(called by ``AppConfig.ready()``) raises ``ImproperlyConfigured`` with the text ``manage.py check``
prints, so a broken configuration never serves a connection (docs/settings.md).
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .conf import DEFAULTS, ws_settings

#: Numeric keys a check of their own validates with a more specific message.
_CHECKED_ELSEWHERE = {"MAX_MESSAGE_SIZE", "MESSAGE_RATE", "MESSAGE_BURST", "HANDSHAKE_RATE", "HANDSHAKE_BURST",
                      "IDLE_TIMEOUT", "WRITE_TIMEOUT", "WRITE_BUFFER_LIMIT", "TENANT_CACHE_TTL",
                      "TENANT_SWEEP_INTERVAL", "MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_TENANT",
                      "MAX_CONNECTIONS_PER_USER", "MAX_CONNECTIONS_PER_IP"}


def _type_errors() -> list[Any]:
    """Every key whose default is a number or a bool must hold one (a string is never coerced)."""
    out: list[Any] = []
    for key, default in DEFAULTS.items():
        if key in _CHECKED_ELSEWHERE or key not in ws_settings.user_settings:
            continue
        value = ws_settings.user_settings[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                out.append(Error(f"ROCKSTAR_WS[{key!r}] is {value!r}", hint="Use True or False.",
                                 id="rockstar_ws.E004"))
        elif isinstance(default, int | float):
            whole = isinstance(default, int)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number or value < 0 or (whole and value != int(value)):
                out.append(Error(f"ROCKSTAR_WS[{key!r}] is {value!r}",
                                 hint=f"Use a {'whole number' if whole else 'number'} >= 0 (default {default!r}).",
                                 id="rockstar_ws.E003"))
    return out


def configuration_errors() -> list[CheckMessage]:
    """The errors (not warnings, not silenced) of every check tagged ``rockstar_ws``."""
    from django.core.checks.registry import registry

    errors = [m for m in registry.run_checks(tags=["rockstar_ws"]) if m.is_serious() and not m.is_silenced()]
    unreadable = [m for m in errors if m.id == "rockstar_ws.E001"]
    return unreadable or errors  # unknown keys make every other check repeat the same message


def format_errors(errors: list[CheckMessage]) -> str:
    """The errors as ``manage.py check`` prints them (id, message, hint)."""
    lines = [f"ROCKSTAR_WS is misconfigured ({len(errors)} error(s); `manage.py check` lists them too):"]
    lines += [str(m) for m in errors]
    return "\n".join(lines)


def reporting_command() -> bool:
    """True under ``manage.py check``: it reports the errors with ids and hints instead of dying on them."""
    return len(sys.argv) > 1 and sys.argv[1] == "check"


def raise_for_configuration_errors() -> None:
    """Raise ``ImproperlyConfigured`` with every configuration error (called at start-up)."""
    errors = configuration_errors()
    if errors:
        raise ImproperlyConfigured(format_errors(errors))


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
    errors.extend(_type_errors())
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


# -- protection (docs/protection.md) --------------------------------------------------------
_NUMERIC_LIMITS = ("MAX_MESSAGE_SIZE", "MESSAGE_RATE", "MESSAGE_BURST", "HANDSHAKE_RATE", "HANDSHAKE_BURST",
                   "IDLE_TIMEOUT", "WRITE_TIMEOUT", "WRITE_BUFFER_LIMIT",
                   "INBOX_MAX_BYTES")
DAPHNE_MAX_MESSAGE_SIZE = 1024 * 1024


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
                             id="rockstar_ws.E201"))
    from .limits.upgrader import RATE_LIMIT_POLICIES

    if ws_settings.RATE_LIMIT_POLICY not in RATE_LIMIT_POLICIES:
        out.append(Error(f"ROCKSTAR_WS['RATE_LIMIT_POLICY'] is {ws_settings.RATE_LIMIT_POLICY!r}",
                         hint=f"Use one of {', '.join(RATE_LIMIT_POLICIES)}.", id="rockstar_ws.E202"))
    if out:
        return out
    every = _allows_every_origin()
    if every and ws_settings.CHECK_ORIGIN is None:
        session_on = bool(ws_settings.AUTH_SESSION)
        session_mw = "django.contrib.sessions.middleware.SessionMiddleware" in (settings.MIDDLEWARE or ())
        if session_on or session_mw:
            why = "ROCKSTAR_WS['AUTH_SESSION']" if session_on else "SessionMiddleware"
            out.append(Error(
                f"{every} admits every origin while browsers authenticate with a session cookie ({why}): "
                "any web site can open a WebSocket as your logged-in users (cross-site WebSocket hijacking).",
                hint="List your sites in ROCKSTAR_WS['ALLOWED_ORIGINS'] (e.g. ['https://app.example.com']).",
                id="rockstar_ws.E203"))
    if ws_settings.AUTH_QUERY_PARAM and not settings.DEBUG:
        out.append(Warning(
            f"ROCKSTAR_WS['AUTH_QUERY_PARAM'] is {ws_settings.AUTH_QUERY_PARAM!r}: tokens are accepted in the "
            "query string while DEBUG is False: "
            "tokens end up in proxy access logs and browser history.",
            hint="Send tokens in the Authorization header or a subprotocol, and set AUTH_QUERY_PARAM to None.",
            id="rockstar_ws.W201"))
    off = [n for n in ("MAX_MESSAGE_SIZE", "MESSAGE_RATE", "HANDSHAKE_RATE") if not getattr(ws_settings, n)]
    if not (ws_settings.WRITE_TIMEOUT or ws_settings.WRITE_BUFFER_LIMIT):
        off.append("WRITE_TIMEOUT and WRITE_BUFFER_LIMIT")
    if off and not settings.DEBUG:
        out.append(Warning(
            f"Protection limits are switched off: {', '.join(off)}. One client can then exhaust the process.",
            hint="Keep the defaults (docs/protection.md) or set limits that fit your traffic.",
            id="rockstar_ws.W202"))
    if ws_settings.MAX_MESSAGE_SIZE == 0 or ws_settings.MAX_MESSAGE_SIZE > DAPHNE_MAX_MESSAGE_SIZE:
        out.append(Info(
            f"ROCKSTAR_WS['MAX_MESSAGE_SIZE'] is {ws_settings.MAX_MESSAGE_SIZE}: daphne still refuses messages "
            f"over {DAPHNE_MAX_MESSAGE_SIZE} bytes (1009) unless started with --websocket-max-message-size "
            "and --websocket-max-frame-size.",
            id="rockstar_ws.I201"))
    return out


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


# -- set-up: the pieces a fresh project forgets (docs/guide.md, "Set-up checks") -------------
_ASGI_SNIPPET = (
    'application = ProtocolTypeRouter({"http": get_asgi_application(), '
    '"websocket": AuthMiddlewareStack(default_server)})  # from rockstar_ws import default_server')


def _unwrap_websocket_app(app: Any, depth: int = 0) -> Any:
    """The rockstar_ws server behind Channels-style wrappers (``inner`` / ``application``), or
    the innermost app reached."""
    from .engine.server import WebSocketServer

    if isinstance(app, WebSocketServer) or depth > 20:
        return app
    routes = getattr(app, "routes", None)  # a Channels URLRouter: rockstar_ws's urlpatterns entries in it
    if getattr(app, "_path_routing", False) is True and isinstance(routes, (list, tuple)):
        from .engine.compose import RouteEntry

        for route in routes:
            found = _unwrap_websocket_app(getattr(route, "callback", None), depth + 1)
            if isinstance(found, RouteEntry):
                return found.server
            if isinstance(found, WebSocketServer):
                return found
        return app
    mapping = getattr(app, "application_mapping", None)  # a ProtocolTypeRouter nested inside
    if isinstance(mapping, dict) and "websocket" in mapping:
        return _unwrap_websocket_app(mapping["websocket"], depth + 1)
    for attr in ("inner", "application", "app"):
        inner = getattr(app, attr, None)
        if inner is not None and inner is not app:
            return _unwrap_websocket_app(inner, depth + 1)
    return app


def _asgi_application() -> tuple[str, Any] | None:
    """(import string, app) of the project's ASGI application: ``ASGI_APPLICATION``, else the
    ``asgi`` module next to the settings module (what ``startproject`` generates)."""
    import os

    from django.utils.module_loading import import_string

    name = getattr(settings, "ASGI_APPLICATION", None)
    if not name:
        module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
        if "." not in module:
            return None
        name = module.rsplit(".", 1)[0] + ".asgi.application"
        try:
            return name, import_string(name)
        except ImportError:
            return None
    return name, import_string(name)


@register("rockstar_ws")
def check_setup(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """daphne in INSTALLED_APPS, an ASGI application whose websocket side reaches a rockstar_ws
    server, and at least one route on it."""
    from django.apps import apps

    from .engine.server import WebSocketServer, default_server

    out: list[Any] = []
    if not apps.is_installed("daphne"):
        out.append(Warning(
            "'daphne' is not in INSTALLED_APPS: 'manage.py runserver' is Django's WSGI server, which answers "
            "every WebSocket handshake with an HTML 404.",
            hint="Put 'daphne' first in INSTALLED_APPS (or serve with 'daphne' or 'uvicorn' yourself).",
            id="rockstar_ws.W301"))
    server: Any = default_server
    try:
        found = _asgi_application()
    except Exception as exc:  # an import error in asgi.py: runserver and daphne will show it too
        found = None
        out.append(Warning(f"ASGI_APPLICATION {getattr(settings, 'ASGI_APPLICATION', None)!r} cannot be imported: "
                           f"{type(exc).__name__}: {exc}", hint="Fix the import string or the asgi module.",
                           id="rockstar_ws.W302"))
    if found is not None:
        name, app = found
        from django.core.handlers.asgi import ASGIHandler

        mapping = getattr(app, "application_mapping", None)
        target = _unwrap_websocket_app(app)
        if isinstance(app, ASGIHandler):
            out.append(Warning(
                f"{name} is Django's plain ASGI handler (asgi.py as startproject generated it): every WebSocket "
                "handshake fails with 500 'Django can only handle ASGI/HTTP connections, not websocket'.",
                hint=f"In asgi.py, after get_asgi_application(): {_ASGI_SNIPPET}.", id="rockstar_ws.W303"))
        elif isinstance(mapping, dict) and "websocket" not in mapping:
            out.append(Warning(f"{name} has no 'websocket' entry: WebSocket handshakes are refused.",
                               hint=f"Add one: {_ASGI_SNIPPET}.", id="rockstar_ws.W303"))
        elif isinstance(target, WebSocketServer):
            server = target
        elif isinstance(mapping, dict):
            out.append(Warning(
                f"The 'websocket' side of {name} does not reach a rockstar_ws server ({target!r}): rockstar_ws "
                "routes are not served.",
                hint=f"Route 'websocket' to rockstar_ws: {_ASGI_SNIPPET}.", id="rockstar_ws.W303"))
    if len(server.routes) == 0:
        out.append(Warning(
            f"No WebSocket route is registered on {server.name!r}: every handshake is refused with 404.",
            hint="Register routes in a ws_routes.py module of an installed app (@default_server.route('/ws/echo')), "
                 "or in ROCKSTAR_WS['ROUTES'].", id="rockstar_ws.W304"))
    return out


def _negative_or_not_numbers(keys: tuple[str, ...], *, whole: bool) -> list[tuple[str, Any]]:
    """The keys (with their values) that hold no number >= 0 (an int where ``whole``; never a bool)."""
    kinds = int if whole else int | float
    bad = []
    for key in keys:
        value = getattr(ws_settings, key)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
            bad.append((key, value))
    return bad


@register("rockstar_ws")
def check_tenancy(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The resolver imports, the numbers make sense, route options are well formed."""
    from .engine.server import default_server
    from .tenants import get_resolver

    errors: list[Any] = []
    try:
        resolver = get_resolver()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="rockstar_ws.E041",
                      hint="Name a function func(host) -> TenantInfo | str | None, or None to turn tenancy off.")]
    for key, value in _negative_or_not_numbers(("TENANT_CACHE_TTL", "TENANT_SWEEP_INTERVAL"), whole=False):
        errors.append(Error(f"ROCKSTAR_WS[{key!r}] must be a number of seconds >= 0, got {value!r}",
                            id="rockstar_ws.E042"))
    for route in default_server.routes:
        cross = route.options.get("cross_tenant_scopes")
        if cross is not None and (isinstance(cross, str) or not all(isinstance(s, str) for s in cross)):
            errors.append(Error(f"Route {route.label}: cross_tenant_scopes must be a list of scope strings, "
                                f"got {cross!r}", id="rockstar_ws.E043"))
        if route.tenant and resolver is None:
            errors.append(Warning(f"Route {route.label} is declared for tenant {route.tenant!r} but tenancy is "
                                  "off (TENANT_RESOLVER is None): it can never be reached.", id="rockstar_ws.W041"))
    return errors


@register("rockstar_ws")
def check_registry(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Registry and limit settings that would fail at the first connection (``rockstar_ws.E1xx``)."""
    errors: list[Any] = []
    try:
        if not ws_settings.LIVE_REGISTRY:
            return errors
        limits = ("MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_TENANT", "MAX_CONNECTIONS_PER_USER", "MAX_CONNECTIONS_PER_IP")
        for key, value in _negative_or_not_numbers(limits, whole=True):
            errors.append(Error(f"ROCKSTAR_WS[{key!r}] is {value!r}", hint="Use an int >= 0 (0: no limit).",
                                id="rockstar_ws.E101"))
        heartbeat, ttl = float(ws_settings.REGISTRY_HEARTBEAT), float(ws_settings.REGISTRY_TTL)
        if heartbeat <= 0 or ttl < 2 * heartbeat:
            errors.append(Error(f"REGISTRY_HEARTBEAT={heartbeat}, REGISTRY_TTL={ttl}",
                                hint="Use a heartbeat > 0 and a TTL of at least twice the heartbeat.",
                                id="rockstar_ws.E102"))
        from .registry import redis_url_from_settings

        redis_url_from_settings()
    except Exception as exc:
        errors.append(Error(str(exc), hint="Fix the live-registry settings (docs/connections.md).",
                            id="rockstar_ws.E103"))
    return errors
