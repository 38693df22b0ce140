"""Tenants and the hosts that lead to them (see docs/tenants.md).

A tenant is identified by a slug (``ctx.request.tenant_id``); each of its hosts is stored
lower-case without a port, exactly as the consumer normalizes the ``Host`` header, so one
lookup by primary key finds it. Saving or deleting either model invalidates the host->tenant
cache of every server process (rockstar_ws.tenants listens to the signals and broadcasts through
the channel layer); deactivating a tenant also closes its open connections.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.utils import timezone

from ..core.routing import normalize_host
from .overrides import validate_tenant_settings
from .signals import tenants_bulk_changed

__all__ = ["Tenant", "TenantHost", "TenantQuerySet", "clean_host"]

_host_validator = RegexValidator(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$",
    "Enter a host name such as tenant1.example.com (no scheme, port or path).",
)


def clean_host(value: str) -> str:
    """``"Tenant1.Example.com:8000"`` -> ``"tenant1.example.com"``; anything but a host name with an
    optional port raises :class:`ValidationError`."""
    raw = (value or "").strip()
    name, sep, port = raw.rpartition(":") if ":" in raw else (raw, "", "")
    if sep and not port.isdigit():
        raise ValidationError(_host_validator.message, code="invalid")
    host = normalize_host(name)
    _host_validator(host)
    return host


class TenantQuerySet(models.QuerySet):
    """Bulk activation that reaches running servers (a plain ``update()`` sends no signals)."""

    def deactivate(self) -> int:
        """Mark the tenants inactive and close their open connections in every process."""
        return self._set_active(False)

    def activate(self) -> int:
        """Mark the tenants active again; their hosts accept new connections."""
        return self._set_active(True)

    def _set_active(self, active: bool) -> int:
        identifiers = list(self.values_list("identifier", flat=True))
        count = self.update(is_active=active, updated=timezone.now())
        if identifiers:
            transaction.on_commit(lambda: tenants_bulk_changed.send(Tenant, identifiers=identifiers, close=not active))
        return count


class Tenant(models.Model):
    """A tenant: its hosts resolve to it, and its tokens are valid on its hosts only."""

    identifier = models.SlugField(
        max_length=100, unique=True,
        help_text="The tenant id handlers see as ctx.request.tenant_id and tokens carry in their tenant claim.")
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(
        default=True,
        help_text="Inactive tenants' hosts refuse new connections (403); deactivating closes open ones (4403).")
    max_connections = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Open connections allowed for this tenant (cluster-wide with Redis); "
                  "empty = MAX_CONNECTIONS_PER_TENANT, 0 = no limit.")
    settings = models.JSONField(
        default=dict, blank=True,
        help_text="Overrides of connection settings for this tenant, e.g. "
                  '{"max_message_size": 65536, "allowed_origins": ["https://app.tenant1.com"]}.')
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["identifier"]
        verbose_name = "tenant"

    def __str__(self) -> str:
        return self.name or self.identifier

    def clean(self) -> None:
        """Validate the settings overrides against the known keys (a clear error per key)."""
        try:
            self.settings = validate_tenant_settings(self.settings)
        except ValidationError as exc:
            raise ValidationError({"settings": exc.messages}) from exc

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.settings = validate_tenant_settings(self.settings)
        super().save(*args, **kwargs)

    def deactivate(self) -> None:
        """Refuse new connections on this tenant's hosts and close its open ones, in every process."""
        self.is_active = False
        self.save(update_fields=["is_active", "updated"])

    def activate(self) -> None:
        """Let this tenant's hosts accept connections again."""
        self.is_active = True
        self.save(update_fields=["is_active", "updated"])

    @property
    def host_names(self) -> list[str]:
        """The tenant's host names."""
        return [h.host for h in self.hosts.all()]


class TenantHost(models.Model):
    """A host name that resolves to a tenant (lower-case, no port, no trailing dot)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="hosts")
    host = models.CharField(max_length=253, unique=True, validators=[_host_validator],
                            help_text="e.g. tenant1.example.com; stored lower-case without the port.")

    class Meta:
        ordering = ["host"]
        verbose_name = "tenant host"

    def __str__(self) -> str:
        return self.host

    def clean_fields(self, exclude: Any = None) -> None:
        try:
            self.host = clean_host(self.host)
        except ValidationError as exc:
            raise ValidationError({"host": exc.messages}) from exc
        super().clean_fields(exclude)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.host = clean_host(self.host)
        super().save(*args, **kwargs)
