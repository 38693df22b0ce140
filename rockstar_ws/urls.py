"""URLs a project includes: ``path("", include("rockstar_ws.urls"))``.

* ``ws-metrics/``: Prometheus metrics (staff session or ``METRICS_TOKEN``).

The admin page and its JSON live in the admin site (``/admin/rockstar_ws/live/``).
"""

from django.urls import path

from .ops.live_views import metrics

app_name = "rockstar_ws"
urlpatterns = [
    path("ws-metrics/", metrics, name="metrics"),
]
