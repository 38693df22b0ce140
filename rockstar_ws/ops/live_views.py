"""The "Live connections" admin page, its JSON and the Prometheus metrics (docs/connections.md).

* ``/admin/rockstar_ws/live/``: the page (staff only, linked from the admin index), updating
  itself every ``LIVE_PAGE_REFRESH`` seconds from the JSON.
* ``/admin/rockstar_ws/live.json``: the same data as JSON (``?connections=1`` adds the records).
* ``/ws-metrics/`` (from ``rockstar_ws.urls``): Prometheus text format.

The JSON and the metrics are open to staff sessions and, when ``METRICS_TOKEN`` is set, to
``Authorization: Bearer <METRICS_TOKEN>``; anyone else gets 403.
"""

from __future__ import annotations

import hmac
import weakref
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.cache import never_cache

from ..conf import ws_settings
from ..registry import get_registry

__all__ = ["install_admin", "live_json", "live_page", "metrics"]

#: Records listed in the JSON with ``?connections=1`` (the oldest first).
MAX_RECORDS = 500


def _token_ok(request: HttpRequest) -> bool:
    token = ws_settings.METRICS_TOKEN
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), str(token).encode())


async def _allowed(request: HttpRequest) -> bool:
    if _token_ok(request):
        return True
    user = await request.auser()
    return bool(user.is_active and user.is_staff)


def _forbidden() -> JsonResponse:
    return JsonResponse({"error": "staff session or metrics token required"}, status=403)


async def live_data(records: bool = False) -> dict[str, Any]:
    """What the page and the JSON show: the registry's snapshot and this process's counters."""
    if not ws_settings.LIVE_REGISTRY:
        from ..engine.server import default_server

        return {"mode": "off", "total": default_server.get_connections(), "by_route": {}, "by_tenant": {},
                "by_user": {}, "by_ip": {}, "by_process": {}, "connections": [],
                "note": "LIVE_REGISTRY is False: only this process's total is known"}
    data = await get_registry().snapshot(records)
    if records:
        data["connections"] = data["connections"][:MAX_RECORDS]
    from ..users import series  # hook: names of users and tenants, the chart's series (docs/connections.md)

    data.update(await series.people(data), series=await series.snapshot())
    return data


@never_cache
async def live_json(request: HttpRequest) -> HttpResponse:
    """The live counts as JSON, for staff and the metrics token."""
    if not await _allowed(request):
        return _forbidden()
    return JsonResponse(await live_data(request.GET.get("connections") == "1"))


def live_page(request: HttpRequest, site: admin.AdminSite) -> TemplateResponse:
    """The admin page; its script polls the JSON."""
    context = {
        **site.each_context(request),
        "title": "Live connections",
        "json_url": reverse(f"{site.name}:rockstar_ws_live_json"),
        "refresh_ms": int(float(ws_settings.LIVE_PAGE_REFRESH) * 1000),
    }
    return TemplateResponse(request, "rockstar_ws/live.html", context)


@never_cache
async def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: connections open, opened, refused (by status and by limit), closed (by code)."""
    if not await _allowed(request):
        return _forbidden()
    from .metrics import render

    body, content_type = await render()
    return HttpResponse(body, content_type=content_type)


_installed_sites: weakref.WeakSet[admin.AdminSite] = weakref.WeakSet()


def install_admin(site: admin.AdminSite | None = None) -> None:
    """Add the "Live connections" page and its JSON to an admin site (the default one if None)."""
    site = site or admin.site
    if site in _installed_sites:
        return
    _installed_sites.add(site)
    get_urls = site.get_urls
    get_app_list = site.get_app_list

    def page(request: HttpRequest) -> TemplateResponse:
        return live_page(request, site)

    def urls() -> list[Any]:
        return [
            path("rockstar_ws/live/", site.admin_view(page), name="rockstar_ws_live"),
            path("rockstar_ws/live.json", live_json, name="rockstar_ws_live_json"),
            *get_urls(),
        ]

    def app_list(request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = get_app_list(request, app_label)
        if app_label not in (None, "rockstar_ws") or not request.user.is_staff:
            return apps
        url = reverse(f"{site.name}:rockstar_ws_live")
        entry = {"name": "Live connections", "object_name": "LiveConnections", "admin_url": url,
                 "add_url": None, "view_only": True, "perms": {"view": True}}
        for app in apps:
            if app["app_label"] == "rockstar_ws":
                app["models"].append(entry)
                break
        else:
            apps.append({"name": "Rockstar WebSockets", "app_label": "rockstar_ws", "app_url": url,
                         "has_module_perms": True, "models": [entry]})
        return apps

    # An AdminSite has no hook for extra pages: wrapping its two methods is what adding one takes.
    site.get_urls = urls  # type: ignore[method-assign]
    site.get_app_list = app_list  # type: ignore[method-assign]
