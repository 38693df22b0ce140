"""Admin of the demo's token grants (scopes and tenant per user)."""

from django.contrib import admin

from .models import DemoGrant


@admin.register(DemoGrant)
class DemoGrantAdmin(admin.ModelAdmin):
    list_display = ("user", "scopes", "tenant")
    search_fields = ("user__username", "scopes", "tenant")
