"""Admin of rockstar_ws: the "Live connections" page (rockstar_ws/live_views.py)."""

from .live_views import install_admin

install_admin()
