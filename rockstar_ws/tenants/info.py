"""What rockstar_ws knows about a connection's tenant: :class:`TenantInfo` (``ctx.tenant``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["TenantInfo"]


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """What rockstar_ws knows about a connection's tenant: ``ctx.tenant``.

    ``identifier`` is what ``ctx.request.tenant_id`` and a token's tenant claim hold.
    ``settings`` are the per-tenant overrides (validated, read-only). ``pk`` is the primary key
    of our ``Tenant`` row (``await Tenant.objects.aget(pk=ctx.tenant.pk)`` for the model);
    ``obj`` is whatever a custom resolver wants handlers to have (e.g. a django-tenants tenant).
    """

    identifier: str
    name: str = ""
    is_active: bool = True
    max_connections: int | None = None
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    pk: Any = None
    obj: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.identifier, str) or not self.identifier:
            raise TypeError(f"TenantInfo.identifier must be a non-empty str, not {self.identifier!r}")
        if not isinstance(self.settings, MappingProxyType):
            object.__setattr__(self, "settings", MappingProxyType(dict(self.settings or {})))

    @classmethod
    def coerce(cls, value: Any, where: str = "tenant resolver") -> TenantInfo | None:
        """None, a TenantInfo, or an identifier string (an active tenant) -> TenantInfo or None."""
        if value is None or isinstance(value, TenantInfo):
            return value
        if isinstance(value, str):
            return cls(identifier=value) if value else None
        raise TypeError(f"{where} returned {type(value).__name__}; return None, an identifier str "
                        f"or rockstar_ws.tenants.TenantInfo")
