"""The in-band heartbeat: ``{"rockstar.ping": n}`` answered by ``{"rockstar.pong": n}``.

Browsers neither expose WebSocket pings nor let a page send one, so a page cannot tell a dead
connection (a laptop waking up, a NAT that forgot the flow) from a quiet one. The pump answers
this text frame itself, on every route and before the handler, so a client gets a pong without
any handler cooperating. See docs/protocol.md ("Heartbeat").
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from ..core.logsafe import escape
from ..core.messages import CloseCode, TextMessage

if TYPE_CHECKING:
    from ..core.connection import WebSocketConnection

__all__ = ["MAX_PING_ID", "PING_PREFIX", "answer_ping"]

logger = logging.getLogger("rockstar_ws.heartbeat")

#: How a heartbeat text starts; the pump pays one ``str.startswith`` per text message for it.
PING_PREFIX = '{"rockstar.ping"'
#: The largest ping number: 2^53 - 1, the largest integer a JavaScript number holds exactly.
MAX_PING_ID = 2**53 - 1


async def answer_ping(conn: WebSocketConnection, text: str) -> None:
    """Answer one heartbeat text (it starts with :data:`PING_PREFIX`) with its pong.

    A text with the prefix that is not exactly ``{"rockstar.ping": <integer 0..2^53-1>}`` closes
    the connection with 4400 ``malformed ping message``, as a malformed refresh message does: the
    prefix is reserved, and a silent pass to the handler would hide a client bug.
    """
    try:
        message = json.loads(text)
        n = message["rockstar.ping"] if isinstance(message, dict) and len(message) == 1 else None
    except (ValueError, KeyError, RecursionError):  # RecursionError: nested too deep to parse
        n = None
    if type(n) is not int or not 0 <= n <= MAX_PING_ID:
        logger.info("ping on %s refused: malformed ping message", escape(conn.ctx.request.path))
        await conn.close(CloseCode.BAD_REQUEST, "malformed ping message")
        return
    try:
        await conn.write_message(TextMessage, f'{{"rockstar.pong": {n}}}')
    except Exception:  # the client left meanwhile; the pump sees its disconnect next
        pass
