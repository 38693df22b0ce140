"""The cheap checks of a handshake, run before any lookup (tenant, route) and any user code.

In order (docs/protection.md, "The order of a handshake"):

1. :func:`check_host`: the ``Host`` header must be in ``ALLOWED_HOSTS``, with Django's own
   validation (400, as Django answers ``DisallowedHost``). A DNS-rebinding page sends a foreign
   ``Host`` with a matching ``Origin``, so the origin check alone admits it.
2. The client IP's handshake rate (429, ``WebSocketServer.check_handshake_rate``).
3. :func:`check_subprotocol_header`: the subprotocols the ASGI server reports must be the ones
   in the raw ``Sec-WebSocket-Protocol`` header (400).

Then the tenant and route lookups (404), the origin, authentication and limits, and
:func:`check_selected_subprotocol` once more just before the accept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from ..core.errors import Deny

if TYPE_CHECKING:
    from ..core.context import Request

__all__ = ["allowed_hosts", "check_host", "check_selected_subprotocol", "check_subprotocol_header", "precheck",
           "raw_host", "raw_subprotocols"]

#: What Django allows when ``DEBUG`` is True and ``ALLOWED_HOSTS`` is empty (HttpRequest.get_host).
DEBUG_HOSTS = (".localhost", "127.0.0.1", "[::1]")


def _header_values(scope: Mapping[str, Any], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers") or () if key.lower() == name]


def raw_host(scope: Mapping[str, Any]) -> str:
    """The ``Host`` header as sent (port included), or the server's address without one, as
    Django's ``get_host()`` falls back to ``SERVER_NAME``."""
    values = _header_values(scope, b"host")
    if values:
        return values[0]
    server = scope.get("server")
    if not server:
        return ""
    name = str(server[0])
    return f"[{name}]" if ":" in name else name


def allowed_hosts() -> list[str]:
    """``ALLOWED_HOSTS`` as Django applies it: with ``DEBUG`` and an empty list, the local names."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = list(DEBUG_HOSTS)
    return hosts


def check_host(scope: Mapping[str, Any]) -> None:
    """``Deny(400)`` unless the handshake's ``Host`` passes Django's host validation."""
    host = raw_host(scope)
    domain, _port = split_domain_port(host)
    if domain and validate_host(domain, allowed_hosts()):
        return
    # More than one Host header is refused by the HTTP servers themselves; a second one here
    # would be a server that let it through, and Django would read the first.
    raise Deny(400, "host not allowed",
               log_detail=f"Host {host!r} is not valid or not in ALLOWED_HOSTS" if host
               else "no Host header")


def raw_subprotocols(scope: Mapping[str, Any]) -> list[str]:
    """The subprotocol names exactly as the client sent them: the ``Sec-WebSocket-Protocol``
    header (every occurrence, in order) split on commas, surrounding spaces stripped."""
    names: list[str] = []
    for value in _header_values(scope, b"sec-websocket-protocol"):
        names.extend(part.strip(" \t") for part in value.split(","))
    return names


def check_subprotocol_header(scope: Mapping[str, Any]) -> None:
    """``Deny(400)`` when the server's ``scope["subprotocols"]`` names one the raw header does not.

    daphne percent-decodes the header before splitting it (``x%2Cb`` becomes ``x`` and ``b``)
    while autobahn negotiates against the raw names: accepting with a decoded name leaves the
    handshake hanging after the application has counted the connection and run its handler.
    """
    offered = scope.get("subprotocols") or ()
    if not offered:
        return
    raw = set(raw_subprotocols(scope))
    strange = [name for name in offered if name not in raw]
    if strange:
        raise Deny(400, "malformed Sec-WebSocket-Protocol",
                   log_detail=f"the server decoded subprotocols {strange!r} the client did not send verbatim")


def check_selected_subprotocol(scope: Mapping[str, Any], selected: str | None,
                               raw: Iterable[str] | None = None) -> None:
    """``Deny(400)`` when ``selected`` (the subprotocol to accept with) is not one of the names
    the client sent verbatim: the server could not complete such a handshake."""
    if selected is None:
        return
    if selected not in (raw_subprotocols(scope) if raw is None else raw):
        raise Deny(400, "subprotocol not offered",
                   log_detail=f"subprotocol {selected!r} was selected but the client did not offer it")


def precheck(scope: Mapping[str, Any], request: Request, rate: Callable[[Request], None]) -> None:
    """The three checks above in order: host (400), the handshake rate ``rate(request)`` (429),
    the subprotocol header (400). Raises :class:`Deny`."""
    check_host(scope)
    rate(request)
    check_subprotocol_header(scope)
