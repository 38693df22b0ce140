"""The upgrader: the twin of the reference's ``SetUpgrader(websocket.Upgrader{...})``.

It decides which handshakes may upgrade (``check_origin``) and carries the per-connection limits
rockstar_ws enforces itself: message size, message rate, idle timeout, write timeout and write
buffer. Buffer sizes and compression are accepted for parity with the reference; ASGI servers
own their buffers and compression, so those are documented, not enforced (docs/protection.md).

Three layers, each field taken from the first that sets it (None means "inherit"):
the route's ``upgrader=Upgrader(...)`` option, the server's (``server.set_upgrader(...)``), and
the ``ROCKSTAR_WS`` settings. A route that only lowers ``max_message_size`` keeps the rate
limits of the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http.request import split_domain_port, validate_host

from ..conf import ws_settings
from ..core.errors import Deny

if TYPE_CHECKING:
    from ..core.context import Context
    from ..core.routing import Route

__all__ = ["RATE_LIMIT_POLICIES", "Upgrader", "default_check_origin", "malformed_origin", "origin_refusal",
           "settings_upgrader"]

RATE_LIMIT_POLICIES = ("close", "close-4429", "drop")

refusal_logger = logging.getLogger("rockstar_ws.refusals")


def _origin_host(origin: str) -> str | None:
    try:
        parts = urlsplit(origin)
        hostname = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not hostname:
        return None
    return hostname.lower()


def malformed_origin(origin: str) -> str | None:
    """Why ``origin`` is not an Origin header at all (for the log), or None when it is one.

    The same test as daphne's handshake parser (autobahn's ``_url_to_origin``), which answers
    400 before the application sees the handshake: rockstar_ws answers 400 too on the servers
    that hand it such a handshake, so an empty or host-less Origin gets one status everywhere.
    ``null`` and ``file://`` origins are well formed (and refused with 403 by the origin check).
    """
    value = origin.strip()
    if value.lower() == "null":
        return None
    try:
        parts = urlsplit(value)
        if parts.scheme.lower() == "file":
            return None
        hostname, _port = parts.hostname, parts.port
    except ValueError as exc:
        return f"Origin {origin[:100]!r} cannot be parsed ({exc})"
    if not hostname:
        return f"Origin {origin[:100]!r} has no host part"
    return None


def origin_refusal(ctx: Context, allowed_origins: Sequence[str] | None = None,
                   allow_missing: bool = True) -> str | None:
    """Why the default origin check refuses ``ctx`` (for the log), or None when it admits it."""
    origin = ctx.request.origin
    if origin is None:
        return None if allow_missing else "no Origin header and ALLOW_MISSING_ORIGIN is False"
    host = _origin_host(origin)
    if host is None:
        return f"Origin {origin[:100]!r} is not an http(s) origin"
    if host == ctx.request.host:
        return None
    if allowed_origins is None:
        allowed_origins = ws_settings.ALLOWED_ORIGINS
    source = "ALLOWED_ORIGINS"
    if allowed_origins is None:
        allowed_origins, source = settings.ALLOWED_HOSTS, "ALLOWED_HOSTS"
    patterns = list(allowed_origins)
    if settings.DEBUG and not patterns:
        patterns = [".localhost", "127.0.0.1", "[::1]"]
    plain = []
    for p in patterns:
        if "://" in p:  # a full origin such as "https://app.example.com"
            if origin.rstrip("/").lower() == p.rstrip("/").lower():
                return None
            continue
        plain.append(split_domain_port(p)[0] or p)
    if validate_host(host, plain):
        return None
    return f"Origin {origin[:100]!r} is neither the Host {ctx.request.host!r} nor in {source}"


def default_check_origin(ctx: Context, allowed_origins: Sequence[str] | None = None,
                         allow_missing: bool = True) -> bool:
    """Admit same-host origins and origins whose host is in ``allowed_origins`` (default:
    ``ROCKSTAR_WS["ALLOWED_ORIGINS"]``, else ``ALLOWED_HOSTS``, with Django's patterns:
    ``.example.com``, ``*``; full origins ``https://app.example.com`` match exactly).

    A handshake without ``Origin`` comes from a non-browser client (browsers always send it, and
    cross-site hijacking needs a browser), so it is admitted unless ``allow_missing`` is False.
    """
    return origin_refusal(ctx, allowed_origins, allow_missing) is None


@dataclass(slots=True)
class Upgrader:
    """Handshake policy and per-connection limits. ``None`` means "inherit" (server, then settings).

    * ``check_origin(ctx) -> bool``: None means :func:`default_check_origin` with
      ``allowed_origins`` and ``allow_missing_origin``.
    * ``max_message_size``: bytes (UTF-8 for text); a larger message closes with 1009. 0 = no limit.
    * ``message_rate`` / ``message_burst``: a token bucket of messages per second; over it,
      ``rate_limit_policy`` (``"close"`` 1008, ``"close-4429"``, ``"drop"``). Rate 0 = no limit.
    * ``idle_timeout``: seconds without a client message before closing with 4408. 0 = never.
    * ``write_timeout``: seconds a write may block on a client that does not read (1013). 0 = never.
    * ``write_buffer_limit``: bytes the server may hold unsent for the client (daphne) (1013).
    * ``subprotocols``: application subprotocols the route accepts (first offered match wins).
    * ``read_buffer_size``, ``write_buffer_size``, ``enable_compression``: for parity with the
      reference; the ASGI server owns its buffers and compression (see docs/protection.md).
    """

    check_origin: Callable[[Context], bool] | None = None
    allowed_origins: Sequence[str] | None = None
    allow_missing_origin: bool | None = None
    max_message_size: int | None = None
    message_rate: float | None = None
    message_burst: int | None = None
    rate_limit_policy: str | None = None
    idle_timeout: float | None = None
    write_timeout: float | None = None
    write_buffer_limit: int | None = None
    subprotocols: Sequence[str] = ()
    read_buffer_size: int = 4096
    write_buffer_size: int = 4096
    enable_compression: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rate_limit_policy is not None and self.rate_limit_policy not in RATE_LIMIT_POLICIES:
            raise ImproperlyConfigured(
                f"rate_limit_policy must be one of {', '.join(RATE_LIMIT_POLICIES)}, not {self.rate_limit_policy!r}")
        for name in ("max_message_size", "message_rate", "message_burst", "idle_timeout", "write_timeout",
                     "write_buffer_limit"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ImproperlyConfigured(f"Upgrader.{name} must be >= 0 (0 switches it off), not {value!r}")

    def replace(self, **changes: Any) -> Upgrader:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def over(self, base: Upgrader) -> Upgrader:
        """This upgrader with every unset (None) field taken from ``base``."""
        changes = {f: getattr(base, f) for f in _INHERITED if getattr(self, f) is None}
        if not self.subprotocols and base.subprotocols:
            changes["subprotocols"] = base.subprotocols
        return replace(self, **changes) if changes else self

    def check(self, ctx: Context) -> None:
        """Raise ``Deny(403)`` when the handshake may not upgrade (the log says why), ``Deny(400)``
        for an Origin header that is not an origin (empty, no host); pick the subprotocol."""
        origin = ctx.request.origin
        if origin is not None:
            malformed = malformed_origin(origin)
            if malformed is not None:
                raise Deny(400, "invalid Origin header", log_detail=malformed)
        if self.check_origin is not None:
            why = None if self.check_origin(ctx) else f"check_origin refused Origin {ctx.request.origin!r}"
        else:
            allow_missing = True if self.allow_missing_origin is None else self.allow_missing_origin
            why = origin_refusal(ctx, self.allowed_origins, allow_missing)
        if why is not None:
            raise Deny(403, "origin not allowed", log_detail=why)
        if self.subprotocols and ctx.subprotocol is None:
            for offered in ctx.request.subprotocols:
                if offered in self.subprotocols:
                    ctx.subprotocol = offered
                    break


_INHERITED = tuple(f.name for f in fields(Upgrader)
                   if f.name not in ("subprotocols", "read_buffer_size", "write_buffer_size",
                                     "enable_compression", "extra"))

_settings_upgrader: Upgrader | None = None


def settings_upgrader() -> Upgrader:
    """The upgrader the ``ROCKSTAR_WS`` settings describe (every field set); cached."""
    global _settings_upgrader
    if _settings_upgrader is None:
        check = ws_settings.CHECK_ORIGIN
        allowed = ws_settings.ALLOWED_ORIGINS
        _settings_upgrader = Upgrader(
            check_origin=check,
            allowed_origins=list(allowed) if allowed is not None else None,
            allow_missing_origin=bool(ws_settings.ALLOW_MISSING_ORIGIN),
            max_message_size=int(ws_settings.MAX_MESSAGE_SIZE or 0),
            message_rate=float(ws_settings.MESSAGE_RATE or 0),
            message_burst=int(ws_settings.MESSAGE_BURST or 0),
            rate_limit_policy=ws_settings.RATE_LIMIT_POLICY,
            idle_timeout=float(ws_settings.IDLE_TIMEOUT or 0),
            write_timeout=float(ws_settings.WRITE_TIMEOUT or 0),
            write_buffer_limit=int(ws_settings.WRITE_BUFFER_LIMIT or 0),
        )
    return _settings_upgrader


def effective_upgrader(route: Route | None, server_upgrader: Upgrader) -> Upgrader:
    """The limits that apply to one connection: route over server over settings."""
    base = server_upgrader.over(settings_upgrader())
    if route is None:
        return base
    route_upgrader = route.options.get("upgrader")
    if route_upgrader is None:
        return base
    if isinstance(route_upgrader, dict):  # from ROCKSTAR_WS["ROUTES"]: {"options": {"upgrader": {...}}}
        try:
            route_upgrader = route.options["upgrader"] = Upgrader(**route_upgrader)
        except TypeError as exc:
            raise ImproperlyConfigured(f"The upgrader option of {route.label}: {exc}") from exc
    if not isinstance(route_upgrader, Upgrader):
        raise ImproperlyConfigured(f"The upgrader option of {route.label} must be an Upgrader or a dict "
                                   f"of its fields, not {type(route_upgrader).__name__}")
    return route_upgrader.over(base)


def _forget_settings_upgrader() -> None:
    global _settings_upgrader
    _settings_upgrader = None


ws_settings.on_change(_forget_settings_upgrader, "ROCKSTAR_WS", "ALLOWED_HOSTS", "DEBUG")
