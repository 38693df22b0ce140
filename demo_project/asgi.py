"""ASGI entry point of the demo: Django for HTTP, rockstar_ws for WebSockets.

Run with ``daphne demo_project.asgi:application``, ``uvicorn demo_project.asgi:application``
or ``python manage.py runserver`` (daphne is in INSTALLED_APPS).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
django_asgi_app = get_asgi_application()  # sets Django up before rockstar_ws is imported

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from rockstar_ws import default_server  # noqa: E402

if settings.DEBUG:
    # runserver serves static files itself; plain daphne (or uvicorn) does not, and the admin
    # and the live page would come unstyled. Production serves them from collectstatic's
    # STATIC_ROOT (a web server, a CDN, or whitenoise), so only DEBUG does this.
    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    # Channels' own middleware wraps the rockstar_ws server like any ASGI app: the session
    # user lands in ctx.user for same-site pages.
    "websocket": AuthMiddlewareStack(default_server),
})
