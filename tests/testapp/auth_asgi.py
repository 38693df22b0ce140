"""A second ASGI app for tests/e2e/test_auth*.py: its own server with a replaced auth manager.

The manager admits the Django session user (Channels' AuthMiddlewareStack) from pages on
``http://localhost:<any port>`` and has the query-token source turned off.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402

from rockstar_ws import AuthManager, WebSocketServer  # noqa: E402

from .auth_routes import register  # noqa: E402
from .ws_routes import probe  # noqa: E402

session_server = WebSocketServer(
    auth_manager=AuthManager(session=True, session_origins=["localhost"], query_param=None),
    name="session-test",
)
register(session_server)
session_server.register_route("/ws/test/probe", probe)

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AuthMiddlewareStack(session_server),
})
