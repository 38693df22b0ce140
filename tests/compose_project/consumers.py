"""A project's own Channels consumer, written without rockstar_ws in mind."""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer

#: What the consumers of this process did, in order (read by the probe view).
EVENTS: list[str] = []


class LegacyConsumer(AsyncWebsocketConsumer):
    """Echoes text; says who it thinks the client is; refuses the room "closed" in connect()."""

    async def connect(self) -> None:
        room = self.scope["url_route"]["kwargs"].get("room", "")
        EVENTS.append(f"connect:{self.scope['path']}")
        if room == "closed":
            await self.close()
            return
        if room == "boom":
            raise RuntimeError("connect failed")
        if "legacy.v1" in self.scope.get("subprotocols", ()):
            await self.accept("legacy.v1")
        else:
            await self.accept()
        user = self.scope.get("user")
        await self.send(text_data=json.dumps({
            "room": room,
            "kwargs": self.scope["url_route"]["kwargs"],
            "user": getattr(user, "username", None) or str(user),
            "authenticated": bool(getattr(user, "is_authenticated", False)),
            "rockstar": self.scope.get("rockstar"),
            "session": "session" in self.scope,
        }, default=str))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "crash":
            raise RuntimeError("receive failed")
        await self.send(text_data=f"echo:{text_data}")

    async def disconnect(self, code: int) -> None:
        EVENTS.append(f"disconnect:{self.scope['path']}:{code}")


class SyncLegacyConsumer(WebsocketConsumer):
    """A synchronous consumer (Channels runs it in a thread): echoes with its room."""

    def connect(self) -> None:
        self.accept()

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        room = self.scope["url_route"]["kwargs"]["room"]
        self.send(text_data=f"sync:{room}:{text_data}")
