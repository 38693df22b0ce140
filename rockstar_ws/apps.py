"""Django app config: settings routes and ``ws_routes`` autodiscovery at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class RockstarWsConfig(AppConfig):
    """Loads routes declared in ``ROCKSTAR_WS["ROUTES"]`` and every app's ``ws_routes.py``."""

    name = "rockstar_ws"
    verbose_name = "Rockstar WebSockets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,
            tenants,
        )
        from .presence import service  # noqa: F401  (registers the PRESENCE system check)

        # A broken configuration stops the process here (daphne, uvicorn and runserver import the
        # app before they listen), with the text `manage.py check` prints, instead of answering
        # every handshake with a 500. `manage.py check` itself reports the errors instead.
        if checks.reporting_command() and checks.configuration_errors():
            return
        checks.raise_for_configuration_errors()
        from .engine.loading import load_routes

        load_routes()
        from .engine.server import default_server
        from .registry import install as install_registry

        tenants.connect_signals()
        tenants.install(default_server)
        install_registry(default_server)  # the live-connection registry and limits (LIVE_REGISTRY)
        from . import users  # hook: per-user delivery and revocation (docs/users.md)

        users.install(default_server)
        users.connect_signals()
