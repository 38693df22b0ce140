"""The tenant's stages of the handshake pipeline (rockstar_ws.handshake.pipeline)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..handshake.pipeline import Stage
from .binding import apply_tenant_settings, check_tenant_binding, check_token_tenant_active
from .propagation import ensure_listening
from .resolver import TenantResolver

if TYPE_CHECKING:
    from ..core.context import Context, Request

__all__ = ["binding_stage", "resolve_stage", "settings_stage"]

#: What ``server.tenant_resolver`` holds: a :class:`TenantResolver`, or any ``async (request) -> tenant``.
Resolver = Callable[["Request"], Awaitable[Any]]


def resolve_stage(resolver: Callable[[], Resolver | None]) -> Stage:
    """``tenant``: the host's tenant (403 when inactive), before the route lookup that uses it.
    ``resolver()`` is read per handshake: tenancy can be turned on after the server is built."""
    async def tenant(ctx: Context) -> None:
        current = resolver()
        if current is None:
            return
        if isinstance(current, TenantResolver):
            ensure_listening()  # changes made elsewhere must reach this process from its first tenant on
        ctx.tenant = await current(ctx.request)
    return tenant


def settings_stage(ctx: Context) -> None:
    """``tenant_settings``: the tenant's overrides of the upgrader."""
    if ctx.tenant is not None:
        apply_tenant_settings(ctx)


def binding_stage(resolver: Callable[[], Resolver | None]) -> Stage:
    """``tenant_binding``: on authenticated routes, a tenant's host admits only its tokens; on a
    host of no tenant, a token of an inactive tenant is refused."""
    async def tenant_binding(ctx: Context) -> None:
        if not ctx.route.authenticated:
            return
        check_tenant_binding(ctx)
        current = resolver()
        if ctx.tenant is None and ctx.request.tenant_id is not None and current is not None:
            await check_token_tenant_active(ctx, current)
    return tenant_binding
