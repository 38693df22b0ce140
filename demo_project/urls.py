"""URLs of the demo project."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("demo_project.demo.urls")),
    path("", include("rockstar_ws.urls")),  # /ws-metrics/ (Prometheus)
]
