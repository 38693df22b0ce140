"""rockstar_ws: the Rockstar Web Framework's WebSocket API as a reusable Django app.

Everything the reference's examples need is exported here.
"""

from ._compat import install as _install_moved_paths
from .auth.manager import AuthManager
from .core.connection import SyncConnection, WebSocketConnection
from .core.context import Context, Request
from .core.errors import ConnectionClosed, Deny, Reject, RouteConflict
from .core.messages import (
    BinaryMessage,
    CloseCode,
    CloseMessage,
    MessageType,
    PingMessage,
    PongMessage,
    TextMessage,
)
from .core.routing import AsgiApp
from .engine.server import WebSocketServer, default_server
from .groups import BroadcastError, InvalidGroupName
from .limits.upgrader import Upgrader
from .tenants import TenantInfo

__version__ = "0.1.0"

_install_moved_paths()

__all__ = [
    "AsgiApp",
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
