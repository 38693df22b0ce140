"""The demo's token hooks: scopes and tenant from the user's :class:`DemoGrant` (ROCKSTAR_WS
``TOKEN_SCOPES`` / ``TOKEN_TENANT``, read by rockstar_ws.auth.serializers for /api/token/)."""

from typing import Any

from .models import DemoGrant


def scopes(user: Any, request: Any = None) -> list[str]:
    """The space-separated scopes of the user's grant (none without one)."""
    grant = DemoGrant.objects.filter(user=user).first()
    return grant.scopes.split() if grant is not None else []


def tenant(user: Any, request: Any = None) -> str | None:
    """The tenant of the user's grant (None without one)."""
    grant = DemoGrant.objects.filter(user=user).first()
    return (grant.tenant or None) if grant is not None else None
