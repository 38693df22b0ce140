"""The ROCKSTAR_WS settings object and settings-declared routes."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from rockstar_ws import WebSocketServer
from rockstar_ws.conf import DEFAULTS, DOCS, ws_settings
from rockstar_ws.loading import load_settings_routes


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

    page = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
    assert page.read_text() == settings_markdown(), "run: python -m rockstar_ws.conf > docs/settings.md"
