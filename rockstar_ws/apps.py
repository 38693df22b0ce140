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
        from . import tenants
        from .registry import install as install_registry
        from .server import default_server

        tenants.connect_signals()
        tenants.install(default_server)
        install_registry(default_server)  # the live-connection registry and limits (LIVE_REGISTRY)
