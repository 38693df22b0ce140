"""The demo URLs plus a probe of the server process (events of the consumers, live counts)."""

from django.http import JsonResponse
from django.urls import include, path

from demo_project.urls import urlpatterns as demo_urlpatterns
from rockstar_ws import default_server
from tests.compose_project.consumers import EVENTS


async def probe(request):
    """This process's consumer events and its rockstar_ws connections (on the event loop)."""
    from tests.compose_project.asgi import front

    closed = None
    if request.GET.get("disconnect_user"):  # the per-user path of docs/users.md, from this process
        closed = await default_server.disconnect_user(request.GET["disconnect_user"], code=4403, reason="revoked")
    conns = [c for s in (default_server, front) for c in s.connections]
    return JsonResponse({
        "closed": closed,
        "events": EVENTS,
        "connections": len(conns),
        "asgi_connections": sorted(c.ctx.route.path for c in conns if c.ctx.route.asgi),
    })


urlpatterns = [path("compose-probe/", probe), path("", include(demo_urlpatterns))]
