"""rockstar_ws.conf: lazy import strings, the removed tenant-claim key, change subscribers."""

from __future__ import annotations

import pytest
from django.test import override_settings

from rockstar_ws.conf import REMOVED, ws_settings
from rockstar_ws.core.errors import ImproperlyConfigured
from rockstar_ws.core.logsafe import escape


def test_the_removed_tenant_claim_key_names_its_replacement():
    assert REMOVED == {"TENANT_TOKEN_CLAIM": "AUTH_TENANT_CLAIM"}
    with override_settings(ROCKSTAR_WS={"TENANT_TOKEN_CLAIM": "org"}):
        removed = "'TENANT_TOKEN_CLAIM' has been removed; use 'AUTH_TENANT_CLAIM'"
        with pytest.raises(ImproperlyConfigured, match=removed):
            getattr(ws_settings, "AUTH_TENANT_CLAIM")  # noqa: B009 - the read is what raises


def test_import_string_keys_resolve_once_and_name_a_bad_one():
    with override_settings(ROCKSTAR_WS={"MIDDLEWARE": ["rockstar_ws.core.logsafe.escape"],
                                        "CHECK_ORIGIN": "rockstar_ws.core.logsafe.escape"}):
        assert ws_settings.MIDDLEWARE == (escape,)
        assert ws_settings.MIDDLEWARE is ws_settings.MIDDLEWARE  # cached, not imported per handshake
        assert ws_settings.CHECK_ORIGIN is escape
    with override_settings(ROCKSTAR_WS={"MIDDLEWARE": [escape, "no.such.middleware"]}):
        bad = r"ROCKSTAR_WS\['MIDDLEWARE'\]\[1\]: cannot import 'no.such.middleware'"
        with pytest.raises(ImproperlyConfigured, match=bad):
            getattr(ws_settings, "MIDDLEWARE")  # noqa: B009 - the read is what raises


def test_subscribers_hear_the_settings_they_asked_for():
    heard: list[str] = []
    ws_settings.on_change(lambda: heard.append("ws"))
    ws_settings.on_change(lambda: heard.append("hosts"), "ALLOWED_HOSTS")
    with override_settings(ROCKSTAR_WS={"INBOX_SIZE": 3}):
        assert ws_settings.INBOX_SIZE == 3
    assert heard == ["ws", "ws"]  # entering and leaving the override
    with override_settings(ALLOWED_HOSTS=["x"]):
        pass
    assert heard == ["ws", "ws", "hosts", "hosts"]
    assert ws_settings.INBOX_SIZE == 256
