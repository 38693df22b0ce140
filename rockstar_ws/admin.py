"""Django admin for rockstar_ws: tenants and their hosts, and the "Live connections" page."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .ops.live_views import install_admin
from .tenants.models import Tenant, TenantHost, TenantQuerySet

install_admin()


class TenantHostInline(admin.TabularInline):
    model = TenantHost
    extra = 1


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """Tenants: unticking "is active" (or the deactivate action) closes their open connections."""

    list_display = ("identifier", "name", "is_active", "hosts_list", "max_connections", "updated")
    list_filter = ("is_active",)
    search_fields = ("identifier", "name", "hosts__host")
    prepopulated_fields = {"identifier": ("name",)}
    readonly_fields = ("created", "updated")
    inlines = [TenantHostInline]
    actions = ["deactivate_tenants", "activate_tenants"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return super().get_queryset(request).prefetch_related("hosts")

    @admin.display(description="hosts")
    def hosts_list(self, obj: Tenant) -> str:
        return ", ".join(h.host for h in obj.hosts.all())

    @admin.action(description="Deactivate selected tenants (closes their connections)")
    def deactivate_tenants(self, request: HttpRequest, queryset: TenantQuerySet) -> None:
        count = queryset.deactivate()
        self.message_user(request, f"{count} tenant(s) deactivated; their open connections are closing.",
                          messages.SUCCESS)

    @admin.action(description="Activate selected tenants")
    def activate_tenants(self, request: HttpRequest, queryset: TenantQuerySet) -> None:
        count = queryset.activate()
        self.message_user(request, f"{count} tenant(s) activated.", messages.SUCCESS)
