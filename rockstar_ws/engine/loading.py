"""Start-up: routes from settings and from ``ws_routes.py`` modules, loaded once."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import autodiscover_modules

from ..conf import resolve_import, ws_settings
from ..core.errors import ImproperlyConfigured
from ..core.routing import registration_site
from .server import WebSocketServer, default_server

__all__ = ["load_routes", "load_settings_routes"]

_loaded = False

_ROUTE_KEYS = {"path", "handler", "host", "tenant", "middleware", "authenticated", "allowed_scopes",
               "require_all_scopes", "name", "options"}


def load_settings_routes(server: WebSocketServer, routes: list[dict[str, Any]]) -> None:
    """Register routes given as dicts (the ``ROCKSTAR_WS["ROUTES"]`` format) on ``server``."""
    for i, spec in enumerate(routes):
        where = f"ROCKSTAR_WS['ROUTES'][{i}]"
        if not isinstance(spec, dict):
            raise ImproperlyConfigured(f"{where} must be a dict, got {type(spec).__name__}")
        unknown = set(spec) - _ROUTE_KEYS
        if unknown:
            raise ImproperlyConfigured(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_ROUTE_KEYS)}")
        if "path" not in spec or "handler" not in spec:
            raise ImproperlyConfigured(f"{where} needs 'path' and 'handler'")
        handler = resolve_import(spec["handler"], where)
        middleware = [resolve_import(m, where) for m in spec.get("middleware") or ()]
        scopes = spec.get("allowed_scopes") or ()
        token = registration_site.set(f"settings.{where}")
        try:
            server.route(
                spec["path"], host=spec.get("host"), tenant=spec.get("tenant"), middleware=middleware,
                authenticated=bool(spec.get("authenticated")) or bool(scopes), allowed_scopes=scopes,
                require_all_scopes=bool(spec.get("require_all_scopes")), name=spec.get("name"),
                **(spec.get("options") or {}),
            )(handler)
        finally:
            registration_site.reset(token)


def load_routes(force: bool = False) -> None:
    """Register settings routes, then import every installed app's ``ws_routes`` module."""
    global _loaded
    if _loaded and not force:
        return
    _loaded = True
    load_settings_routes(default_server, ws_settings.ROUTES)
    if ws_settings.AUTODISCOVER:
        autodiscover_modules("ws_routes")
