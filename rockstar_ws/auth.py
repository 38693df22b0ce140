"""Authentication of handshakes on authenticated routes (the reference's ``AuthManager``).

Until token validation is wired in, an authenticated route refuses every handshake with 401:
it never lets one through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import Deny

if TYPE_CHECKING:
    from .context import Context

__all__ = ["AuthManager"]


class AuthManager:
    """Validates the access token of a handshake and fills ``ctx.request``."""

    async def authenticate(self, ctx: Context) -> None:
        """Authenticate ``ctx`` for ``ctx.route`` or raise :class:`Deny` (401/403)."""
        raise Deny(401, "authentication is not available", log_detail="no token validation configured")
