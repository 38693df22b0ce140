"""Exceptions of rockstar_ws: one way for a read to end, one way to refuse a handshake."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

__all__ = ["ConnectionClosed", "Deny", "ImproperlyConfigured", "NoRoute", "RouteConflict"]

_STATUS_TEXT = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    429: "too many requests",
    500: "internal error",
    503: "service unavailable",
}


class ConnectionClosed(Exception):
    """Raised by reads and writes once the connection has ended.

    ``code`` is the close code (1000 normal, 1001 going away, 1006 the peer vanished
    without a close frame, ...); ``reason`` the close reason when one was sent.
    """

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed with code {code}" + (f": {reason}" if reason else ""))


class Deny(Exception):
    """Refuse a handshake, from middleware, an auth manager, a tenant resolver or a limit.

    ``status`` is the HTTP status of the reference (400, 401, 403, 404, 429). The client sees it
    as a real HTTP status on servers that support the ASGI ``websocket.http.response``
    extension (uvicorn, hypercorn), as HTTP 403 on daphne, or as close code ``4000 + status``
    when ``REFUSAL_MODE`` is ``"close"``. ``reason`` is a short, client-safe text; ``log_detail``
    goes to the server log only (never put a token there).
    """

    def __init__(self, status: int = 403, reason: str | None = None, *, log_detail: str = "") -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"Deny status must be an HTTP error status (4xx/5xx), not {status}")
        self.status = status
        self.reason = reason or _STATUS_TEXT.get(status, "refused")
        self.log_detail = log_detail
        super().__init__(f"{status} {self.reason}")

    @property
    def close_code(self) -> int:
        """The 4000-range close code used by ``REFUSAL_MODE = "close"`` (4401, 4403, ...)."""
        return 4000 + self.status


class NoRoute(Deny):
    """No route for the host and path: the 404 refusal, or, when the server has a ``fallback``
    ASGI application, the hand-over of the handshake to it (docs/channels.md)."""

    def __init__(self, log_detail: str = "") -> None:
        super().__init__(404, log_detail=log_detail)


#: Alias kept for readers of the reference, where a refused upgrade is a "rejection".
Reject = Deny


class RouteConflict(ImproperlyConfigured):
    """The same host and path were registered twice."""
