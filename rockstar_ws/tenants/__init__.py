"""Multi-tenancy: a handshake's host resolves to a tenant, and tokens are bound to their tenant.

How a handshake goes (docs/tenants.md has the table):

1. The ``tenant`` stage of the handshake pipeline (rockstar_ws.handshake.pipeline) runs the
   :class:`TenantResolver`: a per-process cache in front of the resolver named by
   ``ROCKSTAR_WS["TENANT_RESOLVER"]`` (default :func:`model_resolver`, our ``Tenant`` model).
   A host of an inactive tenant is refused with 403; a host of an active tenant sets
   ``request.tenant_id``; ``ctx.tenant`` becomes the :class:`TenantInfo`.
2. The route is looked up with the tenant (host routes, then routes declared for the tenant,
   then global ones).
3. The ``tenant_settings`` stage applies the tenant's setting overrides to the upgrader
   (:func:`apply_tenant_settings`) and, on authenticated routes, right after authentication,
   the ``tenant_binding`` stage checks that the token belongs to the host's tenant
   (:func:`check_tenant_binding`, 403).

One module per concept: ``info`` (TenantInfo), ``overrides`` (per-tenant settings), ``resolver``
(host -> tenant, the cache, :func:`install`), ``binding`` (tokens bound to tenants), ``stages``
(the handshake stages), ``propagation`` (changes reaching running servers), ``signals`` and
``models``. This package re-exports their public names.

Changes reach running servers three ways: signals clear this process's cache; a message on the
channel layer group ``TENANT_CONTROL_GROUP`` clears every other process's cache and closes an
inactive tenant's connections (code 4403); and a periodic sweep re-resolves the hosts of open
connections, for changes made where no signal fires (``QuerySet.update()``, another database
client, a custom resolver's own data).
"""

from __future__ import annotations

from .binding import apply_tenant_settings, check_tenant_binding, check_token_tenant_active
from .info import TenantInfo
from .overrides import register_tenant_setting, validate_tenant_settings
from .propagation import (
    CONTROL_MESSAGE,
    TENANT_INACTIVE_CLOSE_CODE,
    add_control_handler,
    connect_signals,
    control_listener,
    sweep,
    tenants_changed,
)
from .resolver import TenantResolver, get_resolver, install, invalidate, model_resolver, tenant_servers

__all__ = [
    "CONTROL_MESSAGE",
    "TENANT_INACTIVE_CLOSE_CODE",
    "TenantInfo",
    "TenantResolver",
    "add_control_handler",
    "apply_tenant_settings",
    "check_tenant_binding",
    "check_token_tenant_active",
    "connect_signals",
    "control_listener",
    "get_resolver",
    "install",
    "invalidate",
    "model_resolver",
    "register_tenant_setting",
    "sweep",
    "tenant_servers",
    "tenants_changed",
    "validate_tenant_settings",
]
