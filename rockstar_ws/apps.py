"""Django app config: settings routes and ``ws_routes`` autodiscovery at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class RockstarWsConfig(AppConfig):
    """Loads routes declared in ``ROCKSTAR_WS["ROUTES"]`` and every app's ``ws_routes.py``."""

    name = "rockstar_ws"
    verbose_name = "Rockstar WebSockets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers system checks)
        from .loading import load_routes

        load_routes()
        from .registry import install
        from .server import default_server

        install(default_server)  # the live-connection registry and limits (LIVE_REGISTRY)
