"""rockstar_ws under test: the default server with the benchmark's routes.

Same settings (bench.settings) and the same ASGI wrapping as bench/plain_channels.py.
Routes: ``/bench/echo`` (the reference's echo), ``/bench/echo-mw3`` (the same echo behind a
chain of three pass-through middleware), ``/bench/private`` (the echo on an authenticated route),
``/bench/group`` (a broadcast receiver: joins the ``bench`` group and waits) and
``/bench/group-send`` (the broadcast sender: each message it receives goes to the ``bench`` group),
the twins of bench/plain_channels.py's group consumers. ``application_authstack`` is the same
behind Channels' ``AuthMiddlewareStack``, as the demo serves it.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402

from rockstar_ws import Context, WebSocketConnection  # noqa: E402
from rockstar_ws import default_server as ws  # noqa: E402


async def echo(ctx: Context, conn: WebSocketConnection) -> None:
    """The reference's echo: text and binary come back with their type."""
    while True:
        message_type, data = await conn.read_message()
        await conn.write_message(message_type, data)


async def passthrough(ctx: Context, next):
    """A middleware that does nothing but call the next one (what the chain itself costs)."""
    return await next(ctx)


async def passthrough2(ctx: Context, next):
    return await next(ctx)


async def passthrough3(ctx: Context, next):
    return await next(ctx)


async def group_member(ctx: Context, conn: WebSocketConnection) -> None:
    """Broadcast receiver: joins ``bench``; what it reads is ignored (it leaves when it ends)."""
    await conn.join("bench")
    async for _message in conn:
        pass


async def group_sender(ctx: Context, conn: WebSocketConnection) -> None:
    """Broadcast sender: every message it receives goes to every member of ``bench``, with its type."""
    async for message_type, data in conn:
        await ws.broadcast("bench", message_type, data)


ws.register_route("/bench/echo", echo)
ws.register_route("/bench/group", group_member)
ws.register_route("/bench/group-send", group_sender)
ws.register_route("/bench/echo-mw3", echo, [passthrough, passthrough2, passthrough3])
ws.register_authenticated_route("/bench/private", echo)

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": ws,
})

# As the demo (and the README's asgi.py) serves it: the session and user middleware of Channels
# around the server. The echo row through it shows what that wrapping costs per message.
application_authstack = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AuthMiddlewareStack(ws),
})
