"""The tenant's part of the handshake: its settings overrides, and tokens bound to their tenant."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..conf import ws_settings
from ..core.errors import Deny, ImproperlyConfigured
from .info import TenantInfo
from .overrides import UPGRADER_KEYS
from .resolver import inactive_cache, model_resolver

if TYPE_CHECKING:
    from ..core.context import Context

__all__ = ["apply_tenant_settings", "check_tenant_binding", "check_token_tenant_active"]




def _tenant_inactive(identifier: str) -> bool:
    from .models import Tenant

    return Tenant.objects.filter(identifier=identifier, is_active=False).exists()


async def check_token_tenant_active(ctx: Context, resolver: Any) -> None:
    """On a host of no tenant, a token of a tenant that our model knows as inactive is refused (403).

    Applies with the default model resolver only (a custom resolver's tenants need not be in our
    model). Answers are cached for ``TENANT_CACHE_TTL`` and cleared with the host cache.
    """
    identifier = ctx.request.tenant_id
    if ctx.tenant is not None or not identifier or getattr(resolver, "func", None) is not model_resolver:
        return
    now = time.monotonic()
    cached = inactive_cache.get(identifier)
    if cached is not None and cached[0] > now:
        inactive = cached[1]
    else:
        from channels.db import database_sync_to_async

        inactive = await database_sync_to_async(_tenant_inactive)(identifier)
        if len(inactive_cache) > 10_000:
            inactive_cache.clear()
        inactive_cache[identifier] = (now + float(ws_settings.TENANT_CACHE_TTL), inactive)
    if inactive:
        raise Deny(403, "tenant inactive", log_detail=f"token tenant {identifier!r} is inactive")


def apply_tenant_settings(ctx: Context) -> None:
    """Give the handshake the tenant's upgrader overrides (origins, message size).

    They replace fields of ``ctx.upgrader`` (the route's limits over the server's and the
    settings'), which the origin check and the message-size limit read.
    """
    tenant: TenantInfo | None = ctx.tenant
    if tenant is None or not tenant.settings:
        return
    changes = {k: v for k, v in tenant.settings.items() if k in UPGRADER_KEYS}
    if changes:
        ctx.upgrader = ctx.upgrader.replace(**changes)


def check_tenant_binding(ctx: Context) -> None:
    """An authenticated route reached through a tenant's host admits only that tenant's tokens.

    The token's tenant claim (``AUTH_TENANT_CLAIM``, in ``ctx.request.claims``) must equal the
    host's tenant; a token without one is refused too (403). A route opts out with the option
    ``cross_tenant_scopes=[...]``: a token holding one of those scopes may open it on any tenant.
    The host's tenant stays ``ctx.request.tenant_id``.
    """
    tenant: TenantInfo | None = ctx.tenant
    if tenant is None:
        return
    request = ctx.request
    claim_name = ws_settings.AUTH_TENANT_CLAIM
    claim = (request.claims or {}).get(claim_name) if claim_name else None
    if claim is None or str(claim) != tenant.identifier:
        cross = ctx.route.options.get("cross_tenant_scopes") or ()
        if isinstance(cross, str):  # a bare string would match single characters: fail closed
            raise ImproperlyConfigured(f"cross_tenant_scopes of {ctx.route.label} must be a list of scopes")
        if not (cross and request.scopes and not request.scopes.isdisjoint(cross)):
            detail = f"host tenant {tenant.identifier!r}, token tenant {claim!r}, user {request.user_id!r}"
            raise Deny(403, "token not valid for this tenant", log_detail=detail)
    request.tenant_id = tenant.identifier
