"""The one slow-client policy: what happens to a client that does not read what the server writes.

Direct writes (rockstar_ws.limits.guard: ``WRITE_TIMEOUT``, ``WRITE_BUFFER_LIMIT``) and broadcasts
(rockstar_ws.groups: ``GROUP_QUEUE_SIZE``, ``GROUP_MAX_BUFFERED_BYTES``, ``GROUP_OVERFLOW``) measure
slowness with their own limits (a broadcast may queue where a direct write waits), and end a slow
client the same way: the connection is closed at once for the handler and the hub (close code
1013, "try again later"), and the close frame, which queues behind the data the client does not
read, is given :data:`SLOW_CLIENT_CLOSE_WAIT` seconds before the TCP connection is dropped.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..core.messages import CloseCode

if TYPE_CHECKING:
    from ..core.connection import WebSocketConnection

__all__ = ["SLOW_CLIENT_CLOSE_WAIT", "SLOW_CLIENT_CODE", "close_slow_client"]

SLOW_CLIENT_CODE = CloseCode.TRY_AGAIN_LATER
#: Seconds the close frame of a slow client may wait behind its unread data.
SLOW_CLIENT_CLOSE_WAIT = 1.0


def close_slow_client(conn: WebSocketConnection, reason: str) -> Coroutine[Any, Any, None] | None:
    """Close ``conn`` as too slow, now; the awaitable sends the close frame (None: nothing to send)."""
    return conn.begin_close(SLOW_CLIENT_CODE, reason, SLOW_CLIENT_CLOSE_WAIT)
