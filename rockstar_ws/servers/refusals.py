"""How a refused handshake reaches the client.

* ``REFUSAL_MODE = "http"`` (default): the client gets the real HTTP status (400, 401, 403,
  404, 429). On servers that offer the ASGI ``websocket.http.response`` extension (uvicorn,
  hypercorn) it comes with a JSON body ``{"error": ..., "status": ...}``. daphne does not offer
  the extension; rockstar_ws answers through daphne's protocol object instead (see
  asgi_servers.py): the status and its reason phrase, no body. Any other server turns the close
  into its default refusal (usually 403).
* ``REFUSAL_MODE = "close"``: the handshake is accepted and closed at once with
  ``4000 + status`` (4401, 4403, 4404, 4429), for browser apps that must tell reasons apart
  (a browser's WebSocket API shows no HTTP status). No user code runs in either mode.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..core.errors import Deny
from .bridges import ServerBridge

__all__ = ["refuse"]

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def refuse(scope: Mapping[str, Any], send: Send, deny: Deny, mode: str = "http",
                 bridge: ServerBridge | None = None, subprotocol: str | None = None) -> None:
    """Send the refusal for ``deny`` in the given mode.

    ``subprotocol`` is accepted in close mode: a browser that offered subprotocols (e.g. the
    ``rockstar.bearer`` token marker) fails a handshake accepted without one, and would see 1006
    instead of the 44xx code.
    """
    if mode == "close":
        await send({"type": "websocket.accept", **({"subprotocol": subprotocol} if subprotocol else {})})
        await (bridge or ServerBridge(send)).close(deny.close_code, deny.reason)
        return
    if bridge is not None and bridge.refuse(deny.status, deny.reason):
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = json.dumps({"error": deny.reason, "status": deny.status}).encode()
        await send({
            "type": "websocket.http.response.start",
            "status": deny.status,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "websocket.http.response.body", "body": body})
        if bridge is not None:
            bridge.denial_sent()
        return
    # A server without either way turns this into HTTP 403; WebsocketCommunicator shows the code.
    await send({"type": "websocket.close", "code": deny.close_code})
