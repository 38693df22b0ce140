"""The ROCKSTAR_WS settings object and settings-declared routes."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from rockstar_ws import WebSocketServer
from rockstar_ws.conf import DEFAULTS, DOCS, ws_settings
from rockstar_ws.engine.loading import load_settings_routes


def test_defaults_are_documented():
    assert set(DEFAULTS) == set(DOCS)
    assert all(DOCS[k].strip() for k in DOCS)


def test_unknown_key_is_an_error():
    with override_settings(ROCKSTAR_WS={"INBOX_SIZ": 3}):
        with pytest.raises(ImproperlyConfigured, match="INBOX_SIZ"):
            _ = ws_settings.INBOX_SIZE


def test_override_and_reload():
    with override_settings(ROCKSTAR_WS={"INBOX_SIZE": 7}):
        assert ws_settings.INBOX_SIZE == 7
    assert ws_settings.INBOX_SIZE == DEFAULTS["INBOX_SIZE"]


def test_settings_routes_are_registered_with_import_strings():
    s = WebSocketServer()
    load_settings_routes(s, [
        {"path": "/ws/s", "handler": "demo_project.demo.ws_routes.echo",
         "middleware": ["demo_project.demo.middleware.ws_logging_middleware"]},
        {"path": "/ws/p", "handler": "demo_project.demo.ws_routes.echo", "allowed_scopes": ["x"]},
    ])
    r = s.routes.find("", "/ws/s")[0]
    assert r.handler.__name__ == "echo" and len(r.middleware) == 1
    assert s.routes.find("", "/ws/p")[0].authenticated


@pytest.mark.parametrize(("spec", "match"), [
    ({"path": "/ws/a"}, "needs 'path' and 'handler'"),
    ({"path": "/ws/a", "handler": "no.such.module.fn"}, "cannot import"),
    ({"path": "/ws/a", "handler": "demo_project.demo.ws_routes.echo", "hots": "x"}, "unknown key"),
    ("not a dict", "must be a dict"),
])
def test_bad_settings_routes_name_the_problem(spec, match):
    with pytest.raises(ImproperlyConfigured, match=match):
        load_settings_routes(WebSocketServer(), [spec])


def test_docs_settings_page_is_current():
    from pathlib import Path

    from rockstar_ws.conf import settings_markdown

    page = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
    assert page.read_text() == settings_markdown(), "run: python -m rockstar_ws.conf > docs/settings.md"


def test_unknown_key_suggests_the_closest_known_one():
    with override_settings(ROCKSTAR_WS={"INBOX_SIZ": 3, "max_connections": 1, "ZZZQ": 1}):
        with pytest.raises(ImproperlyConfigured) as caught:
            _ = ws_settings.INBOX_SIZE
    message = str(caught.value)
    assert "'INBOX_SIZ' (did you mean 'INBOX_SIZE'?)" in message
    assert "'max_connections' (did you mean 'MAX_CONNECTIONS'?)" in message
    assert "'ZZZQ'," in message and "'ZZZQ' (did you mean" not in message


@pytest.mark.parametrize(("ws", "error_id"), [
    ({"INBOX_SIZE": "lots"}, "rockstar_ws.E003"),
    ({"INBOX_SIZE": 2.5}, "rockstar_ws.E003"),
    ({"GROUP_REFRESH_INTERVAL": -1}, "rockstar_ws.E003"),
    ({"CLOSE_TIMEOUT": True}, "rockstar_ws.E003"),
    ({"LIVE_REGISTRY": "false"}, "rockstar_ws.E004"),
    ({"GROUP_OVERFLOW": "explode"}, "rockstar_ws.E060"),
])
def test_bad_values_are_configuration_errors_with_the_check_text(ws, error_id):
    from rockstar_ws.checks import configuration_errors, raise_for_configuration_errors

    with override_settings(ROCKSTAR_WS=ws):
        errors = configuration_errors()
        assert [e.id for e in errors] == [error_id]
        with pytest.raises(ImproperlyConfigured) as caught:
            raise_for_configuration_errors()
    assert str(errors[0]) in str(caught.value)


def test_good_values_are_no_configuration_error():
    from rockstar_ws.checks import configuration_errors

    with override_settings(ROCKSTAR_WS={"INBOX_SIZE": 10, "CLOSE_TIMEOUT": 2, "LIVE_REGISTRY": False}):
        assert configuration_errors() == []
