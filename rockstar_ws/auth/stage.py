"""Authentication as a stage of the handshake pipeline (rockstar_ws.handshake.pipeline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..conf import ws_settings
from ..handshake.pipeline import Stage

if TYPE_CHECKING:
    from ..core.context import Context
    from .manager import AuthManager

__all__ = ["authentication_stage"]


def authentication_stage(manager: Callable[[], AuthManager], configured: Callable[[], object | None]) -> Stage:
    """``authentication``: ``manager()`` authenticates authenticated routes (401/403).

    On a public route a browser that offers the token marker subprotocol would fail its own
    handshake if no offered name were accepted: the marker is accepted (never the token, which is
    ignored). ``configured()`` is the manager the server was given, if any: reading the marker
    from it must not build the settings' manager for a public route.
    """
    async def authentication(ctx: Context) -> None:
        if ctx.route.authenticated:
            await manager().authenticate(ctx)
        elif ctx.subprotocol is None and ctx.request.subprotocols:
            marker = getattr(configured(), "subprotocol", None) or ws_settings.AUTH_SUBPROTOCOL
            if marker and marker in ctx.request.subprotocols:
                ctx.subprotocol = marker
    return authentication
