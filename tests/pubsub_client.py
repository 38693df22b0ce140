"""A small rockstar.pubsub.v1 client for the end-to-end tests (the ``websockets`` library)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.client import connect

DEADLINE = 60.0


class PubSubClient:
    """Commands with replies (awaited by id) and pushes collected in order, read by one task."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._next = 0
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.pushes: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []  # everything, replies too, in arrival order
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                msg = json.loads(text)
                self.frames.append(msg)
                if "id" in msg:
                    fut = self._replies.pop(msg["id"], None) if msg["id"] is not None else None
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    elif msg["id"] is None:
                        self.pushes.append(msg)
                else:
                    self.pushes.append(msg)
                self._changed.set()
        finally:
            self._changed.set()

    async def command(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a command, return its whole reply (``result`` or ``error``)."""
        self._next += 1
        cid = self._next
        fut = self._replies[cid] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({"id": cid, "type": type_, **fields}))
        async with asyncio.timeout(DEADLINE):
            return await fut

    async def subscribe(self, group: str, **fields: Any) -> dict[str, Any]:
        return await self.command("subscribe", group=group, **fields)

    def pubs(self, group: str | None = None) -> list[dict[str, Any]]:
        return [p for p in self.pushes if p.get("type") == "pub" and (group is None or p["group"] == group)]

    async def wait_for(self, condition: Any, deadline: float = DEADLINE) -> None:
        """Wait until ``condition()`` holds (checked after every frame), or fail at the deadline."""
        async with asyncio.timeout(deadline):
            while not condition():
                if self._reader.done():
                    raise AssertionError(f"connection ended before the condition held: {self.ws.close_code}")
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


class open_client:
    """``async with open_client(server, path) as c:`` a connected :class:`PubSubClient`."""

    def __init__(self, server: Any, path: str = "/ws/test/pubsub", **kwargs: Any) -> None:
        kwargs.setdefault("subprotocols", ["rockstar.pubsub.v1"])
        self._cm = connect(server, path, **kwargs)

    async def __aenter__(self) -> PubSubClient:
        ws = await self._cm.__aenter__()
        self.client = PubSubClient(ws)
        return self.client

    async def __aexit__(self, *exc: Any) -> None:
        self.client._reader.cancel()
        await self._cm.__aexit__(*exc)
