"""Django's name for the app's models: the tenant models live in rockstar_ws.tenants.models."""

from .tenants.models import Tenant, TenantHost, TenantQuerySet, clean_host

__all__ = ["Tenant", "TenantHost", "TenantQuerySet", "clean_host"]
