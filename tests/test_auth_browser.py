"""The demo's browser flow in headless Chromium: log in, get a token from /api/token/, open
/ws/private with the token as a subprotocol, see the message echoed."""

from __future__ import annotations

import pytest

from tests.auth_helpers import user_ids

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def _log_text(page) -> str:
    return page.locator("#log").inner_text()


def test_demo_page_connects_with_the_subprotocol_and_echoes(browser, daphne, server_env):
    alice_id = user_ids(server_env)["alice"]
    page = browser.new_page()
    page.goto(f"{daphne.http_url}/private/")
    page.fill("#username", "alice")
    page.fill("#password", "alice-password")
    page.click("#connect")
    page.wait_for_function("document.getElementById('log').textContent.includes('Connected to /ws/private')",
                           timeout=15000)
    assert "subprotocol rockstar.bearer" in _log_text(page)
    page.fill("#msg", "Hello Server!")
    page.click("#sendbtn")
    expected = f"Message from server: User {alice_id}: Hello Server!"
    page.wait_for_function(f"document.getElementById('log').textContent.includes({expected!r})", timeout=15000)
    assert page.evaluate("ws.protocol") == "rockstar.bearer"
    page.close()


def test_demo_page_shows_the_refusal_for_a_user_without_the_scope(browser, daphne):
    page = browser.new_page()
    page.goto(f"{daphne.http_url}/private/")
    page.fill("#username", "bob")
    page.fill("#password", "bob-password")
    page.click("#connect")
    # A browser sees a refused handshake as a close with 1006 (it hides the HTTP status).
    page.wait_for_function("document.getElementById('log').textContent.includes('Disconnected')", timeout=15000)
    assert "Connected to" not in _log_text(page)
    page.close()


def test_token_view_puts_scopes_and_tenant_into_the_tokens(daphne):
    import base64
    import json
    import urllib.request

    def post(url, body):
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def claims(token):
        part = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    pair = post(f"{daphne.http_url}/api/token/", {"username": "alice", "password": "alice-password"})
    access = claims(pair["access"])
    assert (access["scope"], access["tenant_id"], access["token_type"]) == ("chat:read chat:write", "tenant1", "access")
    refreshed = claims(post(f"{daphne.http_url}/api/token/refresh/", {"refresh": pair["refresh"]})["access"])
    assert (refreshed["scope"], refreshed["tenant_id"]) == ("chat:read chat:write", "tenant1")
    bob = claims(post(f"{daphne.http_url}/api/token/", {"username": "bob", "password": "bob-password"})["access"])
    assert (bob["scope"], bob["tenant_id"]) == ("chat:read", "tenant2")


def test_close_mode_lets_a_browser_tell_4401_from_4403(browser, server_factory, server_env):
    """REFUSAL_MODE = "close": the refusal is accepted with the marker subprotocol and closed
    with 4401/4403, which a browser shows (it hides HTTP statuses)."""
    from rockstar_ws.tokens import access_token_for

    server = server_factory("daphne", env={"ROCKSTAR_TEST_REFUSAL_MODE": "close"})
    ids = user_ids(server_env)
    tokens = {
        "expired": str(access_token_for(ids["alice"], scopes="chat:write", lifetime=-30)),
        "no-scope": str(access_token_for(ids["bob"], scopes="chat:read")),
        "good": str(access_token_for(ids["alice"], scopes="chat:write")),
    }
    page = browser.new_page()
    page.goto(f"{server.http_url}/private/")
    script = """([url, token]) => new Promise((resolve) => {
        const ws = new WebSocket(url, ['rockstar.bearer', token]);
        let opened = false;
        // Send as soon as the socket is open, however slow the handshake: a refused one closes
        // right after its open event, so the send is harmless there.
        ws.onopen = () => { opened = true; ws.send('hi'); };
        ws.onmessage = (e) => { resolve({opened, message: e.data, protocol: ws.protocol}); ws.close(); };
        ws.onclose = (e) => resolve({opened, code: e.code, reason: e.reason, protocol: ws.protocol});
    })"""
    url = f"ws://127.0.0.1:{server.port}/ws/private"
    expired = page.evaluate(script, [url, tokens["expired"]])
    # (daphne passes no close reason for an ASGI close before any message: the code is the signal)
    assert (expired["code"], expired["opened"], expired["protocol"]) == (4401, True, "rockstar.bearer")
    no_scope = page.evaluate(script, [url, tokens["no-scope"]])
    assert no_scope["code"] == 4403
    good = page.evaluate(script, [url, tokens["good"]])
    assert (good["message"], good["protocol"]) == (f"User {ids['alice']}: hi", "rockstar.bearer")
    page.close()
