"""The upgrader: the twin of the reference's ``SetUpgrader(websocket.Upgrader{...})``.

It decides which handshakes may upgrade (``check_origin``) and carries the per-connection limits
rockstar_ws enforces itself (``max_message_size``). Buffer sizes and compression are accepted
for parity with the reference; ASGI servers own their buffers, so they are documented, not
enforced here (see docs/protection.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from .errors import Deny

if TYPE_CHECKING:
    from .context import Context

__all__ = ["Upgrader", "default_check_origin"]


def _origin_host(origin: str) -> str | None:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.lower()


def default_check_origin(ctx: Context, allowed_origins: Sequence[str] | None = None,
                         allow_missing: bool = True) -> bool:
    """Admit same-host origins and origins whose host is in ``allowed_origins`` (default:
    ``ALLOWED_HOSTS``, with Django's patterns: ``.example.com``, ``*``).

    A handshake without ``Origin`` comes from a non-browser client (browsers always send it, and
    cross-site hijacking needs a browser), so it is admitted unless ``allow_missing`` is False.
    """
    origin = ctx.request.origin
    if origin is None:
        return allow_missing
    host = _origin_host(origin)
    if host is None:
        return False
    if host == ctx.request.host:
        return True
    patterns = list(allowed_origins) if allowed_origins is not None else list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not patterns:
        patterns = [".localhost", "127.0.0.1", "[::1]"]
    plain = []
    for p in patterns:
        if "://" in p:  # a full origin such as "https://app.example.com"
            if origin.rstrip("/").lower() == p.rstrip("/").lower():
                return True
            continue
        plain.append(split_domain_port(p)[0] or p)
    return validate_host(host, plain)


@dataclass(slots=True)
class Upgrader:
    """Handshake policy and per-connection limits.

    * ``check_origin(ctx) -> bool``: None means :func:`default_check_origin` with
      ``allowed_origins`` and ``allow_missing_origin``.
    * ``max_message_size``: bytes; a larger message closes the connection with 1009. 0 = no limit.
    * ``subprotocols``: application subprotocols the route accepts (first offered match wins).
    * ``read_buffer_size``, ``write_buffer_size``, ``enable_compression``: for parity with the
      reference; the ASGI server owns its buffers and compression (see the docs).
    """

    check_origin: Callable[[Context], bool] | None = None
    allowed_origins: Sequence[str] | None = None
    allow_missing_origin: bool = True
    max_message_size: int = 1024 * 1024
    subprotocols: Sequence[str] = ()
    read_buffer_size: int = 4096
    write_buffer_size: int = 4096
    enable_compression: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Upgrader:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def check(self, ctx: Context) -> None:
        """Raise ``Deny(403)`` when the handshake may not upgrade; pick the subprotocol."""
        if self.check_origin is not None:
            ok = self.check_origin(ctx)
        else:
            ok = default_check_origin(ctx, self.allowed_origins, self.allow_missing_origin)
        if not ok:
            raise Deny(403, "origin not allowed", log_detail=f"origin={ctx.request.origin!r}")
        if self.subprotocols and ctx.subprotocol is None:
            for offered in ctx.request.subprotocols:
                if offered in self.subprotocols:
                    ctx.subprotocol = offered
                    break
