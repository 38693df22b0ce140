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
    page.wait_for_function("document.getElementById('log').textContent.includes('Connected to /ws/private-browser')",
                           timeout=30000)
    assert "subprotocol rockstar.bearer" in _log_text(page)
    page.fill("#msg", "Hello Server!")
    page.click("#sendbtn")
    expected = f"Message from server: User {alice_id}: Hello Server!"
    page.wait_for_function(f"document.getElementById('log').textContent.includes({expected!r})", timeout=30000)
    assert page.evaluate("client.protocol") == "rockstar.bearer"
    page.close()


def test_demo_page_shows_why_a_user_without_the_scope_is_refused(browser, daphne):
    """The page's route refuses in close mode, so bob reads the reason, not "Disconnected (1006)"."""
    page = browser.new_page()
    page.goto(f"{daphne.http_url}/private/")
    page.fill("#username", "bob")
    page.fill("#password", "bob-password")
    page.click("#connect")
    page.wait_for_function("document.getElementById('log').textContent.includes('Refused (')", timeout=30000)
    text = _log_text(page)
    assert "Refused (4403): forbidden: the token lacks the chat:write scope" in text, text
    assert "Disconnected (1006)" not in text and "Message from server" not in text
    page.close()


def test_demo_page_says_when_the_token_is_not_valid(browser, daphne):
    page = browser.new_page()
    page.goto(f"{daphne.http_url}/private/")
    # A token the server refuses (4401): the page gets it from /api/token/, so replace the answer.
    page.route("**/api/token/", lambda route: route.fulfill(
        status=200, content_type="application/json", body='{"access": "not.a.jwt", "refresh": "x"}'))
    page.fill("#username", "alice")
    page.fill("#password", "alice-password")
    page.click("#connect")
    page.wait_for_function("document.getElementById('log').textContent.includes('Refused (')", timeout=30000)
    assert "Refused (4401): no valid token" in _log_text(page)
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
    from rockstar_ws.auth.tokens import access_token_for

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


def test_plain_daphne_serves_the_admin_and_live_page_styles(browser, daphne):
    """The session's server is plain daphne (not runserver): with DEBUG the demo's asgi.py serves
    static files, so the admin's stylesheet loads and the live page is styled."""
    import urllib.request

    with urllib.request.urlopen(f"{daphne.http_url}/static/admin/css/base.css", timeout=30) as r:
        assert r.status == 200 and b"body" in r.read()
    page = browser.new_page()
    failed: list[str] = []
    page.on("response", lambda resp: resp.url.endswith(".css") and resp.status != 200 and failed.append(resp.url))
    page.goto(f"{daphne.http_url}/admin/login/?next=/admin/rockstar_ws/live/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin-password")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/rockstar_ws/live/", timeout=30000)
    sheets = page.evaluate("Array.from(document.styleSheets).map(s => s.href).filter(Boolean)")
    assert any(h.endswith("/static/admin/css/base.css") for h in sheets), sheets
    # Applied, not only linked: the admin's header gets its background colour from base.css.
    colour = page.evaluate("getComputedStyle(document.getElementById('header')).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), colour
    assert failed == []
    page.close()
