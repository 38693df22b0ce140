"""WebSocket message types, numbered as in RFC 6455 and the reference (Text 1 ... Pong 10)."""

from __future__ import annotations

import enum

__all__ = [
    "BinaryMessage",
    "CloseCode",
    "CloseMessage",
    "MessageType",
    "PingMessage",
    "PongMessage",
    "TextMessage",
]


class MessageType(enum.IntEnum):
    """The reference's message type constants, as an IntEnum."""

    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


TextMessage = MessageType.TEXT
BinaryMessage = MessageType.BINARY
CloseMessage = MessageType.CLOSE
PingMessage = MessageType.PING
PongMessage = MessageType.PONG


class CloseCode(enum.IntEnum):
    """Every close code rockstar_ws sends (and 1005/1006, which it reports but never sends).

    The 4xxx codes are 4000 + an HTTP status: refusals in ``REFUSAL_MODE = "close"`` (any other
    refusal status ``s`` closes with ``4000 + s``), an expired token (4401), an inactive tenant
    (4403), the idle timeout (4408) and the ``close-4429`` rate-limit policy.
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    IDLE_TIMEOUT = 4408
    TOO_MANY_REQUESTS = 4429
    SERVER_ERROR = 4500
