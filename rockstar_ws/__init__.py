"""rockstar_ws: the Rockstar Web Framework's WebSocket API as a reusable Django app.

Everything the reference's examples need is exported here.
"""

from .auth import AuthManager
from .connection import SyncConnection, WebSocketConnection
from .context import Context, Request
from .errors import ConnectionClosed, Deny, Reject, RouteConflict
from .groups import BroadcastError, InvalidGroupName
from .messages import (
    BinaryMessage,
    CloseCode,
    CloseMessage,
    MessageType,
    PingMessage,
    PongMessage,
    TextMessage,
)
from .server import WebSocketServer, default_server
from .tenants import TenantInfo
from .upgrader import Upgrader

__version__ = "0.1.0"

__all__ = [
    "AuthManager",
    "BinaryMessage",
    "BroadcastError",
    "CloseCode",
    "CloseMessage",
    "ConnectionClosed",
    "Context",
    "Deny",
    "InvalidGroupName",
    "MessageType",
    "PingMessage",
    "PongMessage",
    "Reject",
    "Request",
    "RouteConflict",
    "SyncConnection",
    "TenantInfo",
    "TextMessage",
    "Upgrader",
    "WebSocketConnection",
    "WebSocketServer",
    "default_server",
]
