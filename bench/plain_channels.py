"""The baseline: hand-written Channels consumers, as a Django developer writes them today.

Served with the same settings (bench.settings) and the same ASGI wrapping as bench/rockstar_app.py:
``ProtocolTypeRouter`` with Django for HTTP; no auth middleware on either side.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django_asgi_app = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):
    """Echo: every message comes back with its type. Also the handshake and idle-memory target."""

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)


class GroupConsumer(AsyncWebsocketConsumer):
    """Broadcast receiver: joins the ``bench`` group; group messages go to the client as text."""

    group = "bench"

    async def connect(self):
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def bench_message(self, event):
        await self.send(text_data=event["text"])


class GroupSendConsumer(AsyncWebsocketConsumer):
    """Broadcast sender: each message it receives goes to the ``bench`` group with group_send."""

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(GroupConsumer.group, {"type": "bench.message", "text": text_data})


application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": URLRouter([
        path("bench/echo", EchoConsumer.as_asgi()),
        path("bench/group", GroupConsumer.as_asgi()),
        path("bench/group-send", GroupSendConsumer.as_asgi()),
    ]),
})
