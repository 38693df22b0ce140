"""rockstar_ws.precheck: the cheap handshake checks, with Django's ALLOWED_HOSTS semantics."""

from __future__ import annotations

import pytest
from django.test import override_settings

from rockstar_ws import Deny
from rockstar_ws.handshake.precheck import (
    check_host,
    check_selected_subprotocol,
    check_subprotocol_header,
    raw_subprotocols,
)


def scope(host: str | None = None, protocols: list[str] | None = None, decoded: list[str] | None = None,
          server: tuple[str, int] | None = ("127.0.0.1", 8000)) -> dict:
    headers = [(b"host", host.encode("latin-1"))] if host is not None else []
    headers += [(b"sec-websocket-protocol", p.encode("latin-1")) for p in protocols or ()]
    return {"type": "websocket", "headers": headers, "server": server,
            "subprotocols": decoded if decoded is not None else [t for p in protocols or () for t in
                                                                  (x.strip() for x in p.split(","))]}


def refused_host(s: dict) -> bool:
    try:
        check_host(s)
    except Deny as deny:
        assert deny.status == 400
        return True
    return False


@override_settings(ALLOWED_HOSTS=["app.example.com", ".tenants.example.com"], DEBUG=False)
def test_host_uses_allowed_hosts_patterns():
    assert not refused_host(scope("app.example.com:8443"))
    assert not refused_host(scope("APP.example.com"))
    assert not refused_host(scope("a.tenants.example.com"))
    assert refused_host(scope("evil.example"))
    assert refused_host(scope("app.example.com.evil.example"))
    assert refused_host(scope("app.example.com@evil.example"))
    assert refused_host(scope(""))


@pytest.mark.parametrize(("debug", "host", "refused"), [
    (True, "localhost:8000", False), (True, "x.localhost", False), (True, "[::1]:80", False),
    (True, "127.0.0.1", False), (True, "example.com", True),
    (False, "localhost", True),  # Django: an empty list admits nothing without DEBUG
])
def test_an_empty_allowed_hosts_follows_debug_like_django(debug, host, refused):
    with override_settings(ALLOWED_HOSTS=[], DEBUG=debug):
        assert refused_host(scope(host)) is refused


@override_settings(ALLOWED_HOSTS=["127.0.0.1", "[::1]"], DEBUG=False)
def test_without_a_host_header_the_server_address_is_validated():
    assert not refused_host(scope(None, server=("127.0.0.1", 8000)))
    assert not refused_host(scope(None, server=("::1", 8000)))
    assert refused_host(scope(None, server=("10.0.0.1", 8000)))
    assert refused_host(scope(None, server=None))


def test_raw_subprotocols_keep_what_the_client_sent():
    assert raw_subprotocols(scope("h", ["a, b ,c", "d"])) == ["a", "b", "c", "d"]
    assert raw_subprotocols(scope("h", ["x%2Crockstar.bearer"])) == ["x%2Crockstar.bearer"]


def test_a_decoded_name_the_client_did_not_send_is_refused():
    check_subprotocol_header(scope("h", ["chat.v1, rockstar.bearer"]))
    with pytest.raises(Deny) as exc:
        check_subprotocol_header(scope("h", ["x%2Crockstar.bearer"], decoded=["x", "rockstar.bearer"]))
    assert exc.value.status == 400


def test_only_a_verbatim_name_may_be_selected():
    s = scope("h", ["x, chat.v1"])
    check_selected_subprotocol(s, None)
    check_selected_subprotocol(s, "chat.v1")
    with pytest.raises(Deny) as exc:
        check_selected_subprotocol(s, "chat.v2")
    assert exc.value.status == 400
