"""rockstar.js in headless Chromium against real daphne processes (docs/client.md).

Pages load the demo's start page and import the module from the server's staticfiles URL, so
the file tested is the file served. What happened inside the server (handshakes accepted or
refused, texts received) is read from the server process itself: the stats through
``/ws/test/probe``, accept times and texts through ``/ws/test/jsclient/record``
(tests/testapp/client_routes.py).
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from websockets.sync.client import connect as sync_connect

from tests.conftest import CHROMIUM
from tests.conftest import CHROMIUM_ARGS as ARGS
from tests.servers import ServerProcess

pytestmark = pytest.mark.usefixtures("chromium")
STATIC = "/static/rockstar_ws/rockstar.js"

# Installs window.T: clients by name, each with the events it saw. getToken asks SimpleJWT's
# /api/token/ view as T.user; T.tokenMode "fail" makes it throw, "bad" return a non-JWT.
HARNESS = """async () => {
  const rs = await import('__STATIC__');
  const T = window.T = {rs, clients: {}, user: 'alice', tokenMode: 'ok', tokens: [], tokenCalls: []};
  T.getToken = async ({reason}) => {
    T.tokenCalls.push(reason);
    if (T.tokenMode === 'fail') throw new Error('token endpoint down');
    if (T.tokenMode === 'bad') return 'not.a.jwt';
    const r = await fetch('/api/token/', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({username: T.user, password: T.user + '-password'})});
    if (!r.ok) throw new Error('token view answered ' + r.status);
    const {access} = await r.json();
    T.tokens.push(rs.decodeJwt(access));
    return access;
  };
  T.make = (name, path, options = {}, auth = false) => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const client = new rs.RockstarClient(`${scheme}://${location.host}${path}`,
      auth ? {...options, getToken: T.getToken} : options);
    const rec = T.clients[name] = {client, states: [], messages: [], closes: [], errors: []};
    client.on('state', (s) => rec.states.push(s));
    client.on('message', (m) => rec.messages.push(m));
    client.on('close', (c) => rec.closes.push(c));
    client.on('error', (e) => rec.errors.push(String(e && e.message)));
    client.connect();
    return true;
  };
  // True when the client can never act again by itself: closed, no socket, no timer pending.
  T.inert = (name) => {
    const c = T.clients[name].client;
    return c.state === 'closed' && c._ws === null && Object.values(c._timers).every((t) => t === null);
  };
  return true;
}""".replace("__STATIC__", STATIC)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, server: ServerProcess, context=None):
    page = (context or browser).new_page()
    page.goto(f"{server.http_url}/private/")  # a page that opens no socket by itself
    assert page.evaluate(HARNESS) is True
    return page


def wait(page, condition: str, timeout: float = 60) -> None:
    page.wait_for_function(condition, timeout=timeout * 1000, polling=100)


def server_json(server: ServerProcess, path: str, question: dict | None = None):
    with sync_connect(f"{server.url}{path}", open_timeout=30) as ws:
        if question is not None:
            ws.send(json.dumps(question))
        return json.loads(ws.recv(timeout=30))


def stats(server: ServerProcess) -> dict:
    return server_json(server, "/ws/test/probe", {"get": "stats"})


def restart(server: ServerProcess, after=None) -> None:
    """SIGKILL the process (no close frame reaches the clients), run ``after`` while it is down,
    and start a new process on the same port."""
    server.kill(signal.SIGKILL)
    server.log.close()
    if after is not None:
        after()
    server.log_path = server.log_path.with_name(server.log_path.stem + "-again.log")
    server.start()


def test_the_client_is_served_by_staticfiles(daphne):
    import urllib.request

    for name, kind in (("rockstar.js", "javascript"), ("rockstar.d.ts", "")):
        with urllib.request.urlopen(f"{daphne.http_url}/static/rockstar_ws/{name}", timeout=30) as r:
            body = r.read()
            assert r.status == 200 and kind in r.headers.get("Content-Type", "") and b"RockstarClient" in body


def test_the_demo_echo_page_speaks_through_the_client(browser, daphne):
    page = browser.new_page()
    page.goto(f"{daphne.http_url}/")
    wait(page, "document.getElementById('log').textContent.includes('Connected to WebSocket')")
    assert page.evaluate("client.state") == "connected"
    page.fill("#msg", "Hello Server!")
    page.press("#msg", "Enter")
    wait(page, "document.getElementById('log').textContent.includes('Message from server: Hello Server!')")
    page.close()


def test_reconnects_after_a_kill_and_sends_made_meanwhile_arrive_in_order(browser, server_factory):
    server = server_factory("daphne")
    page = open_page(browser, server)
    page.evaluate("T.make('a', '/ws/test/jsclient/echo')")
    wait(page, "T.clients.a.client.state === 'connected'")
    page.evaluate("T.clients.a.client.send('before')")
    wait(page, "T.clients.a.messages.includes('before')")

    def while_down():
        # The kernel resets the connections of the killed process: the page learns at once.
        wait(page, "T.clients.a.client.state !== 'connected'")
        queued = page.evaluate("[...Array(10).keys()].map((i) => T.clients.a.client.send('m' + i))")
        assert queued == [True] * 10

    restart(server, while_down)
    expected = [f"m{i}" for i in range(10)]
    wait(page, f"T.clients.a.messages.length >= {1 + len(expected)}")
    rec = page.evaluate("T.clients.a")
    assert rec["messages"] == ["before", *expected]
    assert rec["states"][:2] == ["connecting", "connected"] and rec["states"][-1] == "connected"
    assert rec["closes"] and all(c["willReconnect"] for c in rec["closes"])
    # The new process got them once each, in order, on the connection it accepted.
    record = server_json(server, "/ws/test/jsclient/record")
    assert record["received"] == expected and len(record["accepted"]) == 1
    page.evaluate("T.clients.a.client.send('live')")
    wait(page, "T.clients.a.messages.at(-1) === 'live'")
    page.close()


def test_a_connection_outlives_three_token_expiries(browser, server_factory, server_env):
    from tests.auth_helpers import user_ids

    alice = user_ids(server_env)["alice"]
    server = server_factory("daphne", env={"ROCKSTAR_TEST_ACCESS_TOKEN_SECONDS": "5"})
    page = open_page(browser, server)
    page.evaluate("T.make('p', '/ws/private-browser', {}, true)")
    wait(page, "T.clients.p.client.state === 'connected'")
    first = page.evaluate("T.tokens[0]")
    assert first["exp"] - first["iat"] == 5
    # Three tokens have expired once the third one's exp has passed (with a second to spare).
    wait(page, "T.tokens.length >= 3 && Date.now() / 1000 > T.tokens[2].exp + 1", timeout=90)
    rec = page.evaluate("T.clients.p")
    assert rec["closes"] == [] and rec["states"] == ["connecting", "connected"], rec
    calls = page.evaluate("T.tokenCalls")
    assert calls[0] == "connect" and set(calls[1:]) == {"refresh"}, calls
    page.evaluate("T.clients.p.client.send('still here')")
    wait(page, "T.clients.p.messages.length >= 1")
    assert page.evaluate("T.clients.p.messages") == [f"User {alice}: still here"]
    assert stats(server)["refused"] == {}
    page.close()


def test_get_token_failing_stops_the_client_after_4401(browser, server_factory):
    server = server_factory("daphne", env={"ROCKSTAR_TEST_ACCESS_TOKEN_SECONDS": "5"})
    page = open_page(browser, server)
    page.evaluate("T.make('p', '/ws/private-browser', {}, true)")
    wait(page, "T.clients.p.client.state === 'connected'")
    opened = stats(server)["opened"]
    page.evaluate("T.tokenMode = 'fail'")
    wait(page, "T.clients.p.client.state === 'closed'", timeout=60)
    rec = page.evaluate("T.clients.p")
    # The server closed the expired connection (4401); the client asked once for a fresh token,
    # got an error, and stopped.
    assert rec["closes"][0]["code"] == 4401 and rec["closes"][-1] == {
        "code": 4401, "reason": "getToken failed", "willReconnect": False}, rec["closes"]
    assert "token endpoint down" in rec["errors"]
    assert page.evaluate("T.tokenCalls").count("unauthorized") == 1
    assert page.evaluate("T.inert('p')")
    # No handshake after the expired one: the probe's own connection is the only new one.
    assert stats(server)["opened"] == opened + 1
    page.close()


def test_4403_and_4404_are_never_retried_and_4401_once(browser, server_factory):
    server = server_factory("daphne", env={"ROCKSTAR_TEST_REFUSAL_MODE": "close"})
    page = open_page(browser, server)
    page.evaluate("T.user = 'bob'")  # chat:read only: /ws/private-browser needs chat:write
    page.evaluate("T.make('forbidden', '/ws/private-browser', {}, true)")
    page.evaluate("T.make('missing', '/ws/no-such-route')")
    wait(page, "T.inert('forbidden') && T.inert('missing')")
    def codes(name: str) -> list[tuple[int, bool]]:
        return [(c["code"], c["willReconnect"]) for c in page.evaluate(f"T.clients.{name}.closes")]

    assert codes("forbidden") == [(4403, False)] and codes("missing") == [(4404, False)]
    assert page.evaluate("T.clients.forbidden.states") == ["connecting", "closed"]  # never "connected"
    page.evaluate("T.tokenMode = 'bad'")
    page.evaluate("T.make('bad', '/ws/private-browser', {}, true)")
    wait(page, "T.inert('bad')")
    closes = page.evaluate("T.clients.bad.closes")
    assert [(c["code"], c["willReconnect"]) for c in closes] == [(4401, True), (4401, False)], closes
    assert page.evaluate("T.tokenCalls") == ["connect", "connect", "unauthorized"]
    # Counted on the server: one handshake each for 4403 and 4404, two for the bad token.
    assert stats(server)["refused"] == {"403": 1, "404": 1, "401": 2}
    page.close()


def test_a_silent_connection_is_detected_and_replaced(browser, server_factory):
    """SIGSTOP freezes the server with its TCP connections open: the browser sees nothing, only
    the heartbeat notices."""
    server = server_factory("daphne")
    page = open_page(browser, server)
    page.evaluate("T.make('a', '/ws/test/jsclient/echo', {heartbeatInterval: 1000, connectTimeout: 3000})")
    wait(page, "T.clients.a.client.state === 'connected'")
    server.proc.send_signal(signal.SIGSTOP)
    try:
        wait(page, "T.clients.a.closes.length >= 1", timeout=30)
        assert page.evaluate("T.clients.a.closes[0]") == {"code": 1006, "reason": "heartbeat timeout",
                                                          "willReconnect": True}
    finally:
        server.proc.send_signal(signal.SIGCONT)
    wait(page, "T.clients.a.client.state === 'connected'")
    page.evaluate("T.clients.a.client.send('back')")
    wait(page, "T.clients.a.messages.includes('back')")
    page.close()


def test_500_clients_dropped_by_a_restart_come_back_spread_out(browser, server_factory):
    contexts, per_page = 5, 100  # Chromium allows 255 WebSockets per profile; a context is one
    total = contexts * per_page
    server = server_factory("daphne")
    pages = []
    for _ in range(contexts):
        ctx = browser.new_context()
        page = open_page(browser, server, ctx)
        page.evaluate(f"for (let i = 0; i < {per_page}; i++) T.make('c' + i, '/ws/test/jsclient/echo')")
        pages.append(page)
    connected = "Object.values(T.clients).filter((r) => r.client.state === 'connected').length"
    for page in pages:
        wait(page, f"{connected} === {per_page}", timeout=120)
    assert len(server_json(server, "/ws/test/jsclient/record")["accepted"]) == total

    restart(server)
    deadline = time.monotonic() + 180
    while True:  # the new process's own record: every client came back to it
        accepted = server_json(server, "/ws/test/jsclient/record")["accepted"]
        if len(accepted) >= total or time.monotonic() > deadline:
            break
        time.sleep(0.25)  # polling interval of the wait, not a guess at the server's speed
    assert len(accepted) == total, f"{len(accepted)} of {total} came back"
    for page in pages:
        wait(page, f"{connected} === {per_page}", timeout=60)
    accepted.sort()
    spread = accepted[-1] - accepted[0]
    busiest = max(sum(1 for t in accepted[i:] if t - start < 0.2) for i, start in enumerate(accepted))
    print(f"500 reconnects: spread {spread:.2f}s, busiest 200 ms window {busiest}")
    assert spread >= 2.0, spread
    assert busiest < total / 2, busiest  # not one burst
    for page in pages:
        page.context.close()


# -- pub/sub routes (tests/testapp/pubsub_routes.py) -----------------------------------------
def test_pubsub_recovers_20_publications_made_while_the_server_was_down(browser, server_factory, redis_url):
    import subprocess
    import sys
    import uuid

    from tests.servers import ROOT

    env = {"ROCKSTAR_TEST_PREFIX": f"t{uuid.uuid4().hex[:8]}", "REDIS_URL": redis_url}
    server = server_factory("daphne", env=env)
    page = open_page(browser, server)
    page.evaluate("""() => {
      const c = T.pubsub = new T.rs.RockstarClient(`ws://${location.host}/ws/test/pubsub`, {pubsub: true});
      T.got = []; T.failed = [];
      c.subscribe('news', {onPublication: (d, p) => T.got.push([d, p.offset]),
                           onRecoveryFailed: (i) => T.failed.push(i)});
      c.connect();
    }""")
    wait(page, "T.pubsub.getSubscription('news').state === 'subscribed'")

    def publish(i: int) -> None:
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "ws_publish", "news", json.dumps({"n": i})],
                       cwd=ROOT, env={**server.env}, check=True, timeout=60)

    restart(server, lambda: [publish(i) for i in range(20)])
    wait(page, "T.got.length >= 20", timeout=120)
    publish(20)
    wait(page, "T.got.length >= 21")
    got = page.evaluate("T.got")
    assert [d["n"] for d, _ in got] == list(range(21))
    assert [o for _, o in got] == sorted({o for _, o in got})  # in order, no duplicate
    assert page.evaluate("T.failed") == []


def test_pubsub_reports_recovered_false_when_the_history_is_gone(browser, server_factory, redis_url):
    import uuid

    import redis

    prefix = f"t{uuid.uuid4().hex[:8]}"
    server = server_factory("daphne", env={"ROCKSTAR_TEST_PREFIX": prefix, "REDIS_URL": redis_url})
    page = open_page(browser, server)
    page.evaluate("""() => {
      const c = T.pubsub = new T.rs.RockstarClient(`ws://${location.host}/ws/test/pubsub`, {pubsub: true});
      T.got = []; T.failed = [];
      c.subscribe('news', {onPublication: (d) => T.got.push(d), onRecoveryFailed: (i) => T.failed.push(i)});
      c.connect();
    }""")
    wait(page, "T.pubsub.getSubscription('news').state === 'subscribed'")
    page.evaluate("T.pubsub.publish('news', {n: 1})")
    wait(page, "T.got.length >= 1")

    def lose_history():
        r = redis.Redis.from_url(redis_url)
        for key in r.scan_iter(f"{prefix}*"):
            r.delete(key)

    restart(server, lose_history)
    wait(page, "T.failed.length >= 1", timeout=60)
    assert page.evaluate("T.failed[0].since.offset") is not None


def test_pubsub_presence_and_publish_replies(browser, server_factory):
    server = server_factory("daphne")
    page = open_page(browser, server)
    result = page.evaluate("""async () => {
      const c = new T.rs.RockstarClient(`ws://${location.host}/ws/test/pubsub`, {pubsub: true});
      const joins = [];
      const sub = c.subscribe('room.lobby', {onPresence: (e) => joins.push(e.type), onPublication: () => {}});
      c.connect();
      const reply = await c.publish('room.lobby', {text: 'hi'});
      const presence = await sub.presence();
      return {reply, presence, joins};
    }""")
    assert result["presence"]["clients"] == 1 and "offset" in result["reply"]


def test_pubsub_resubscribes_after_a_reconnect(browser, server_factory, redis_url):
    import uuid

    server = server_factory("daphne", env={"ROCKSTAR_TEST_PREFIX": f"t{uuid.uuid4().hex[:8]}",
                                           "REDIS_URL": redis_url})
    page = open_page(browser, server)
    page.evaluate("""() => {
      const c = T.pubsub = new T.rs.RockstarClient(`ws://${location.host}/ws/test/pubsub`, {pubsub: true});
      T.subscribed = [];
      c.subscribe('news', {onSubscribed: (i) => T.subscribed.push(i), onPublication: () => {}});
      c.connect();
    }""")
    wait(page, "T.subscribed.length >= 1")
    restart(server)
    wait(page, "T.subscribed.length >= 2", timeout=60)
    # The history lives in Redis, not in the killed process: the position is recovered.
    assert page.evaluate("T.subscribed[1].recovered") is True


def test_the_live_demo_page_shows_news_and_a_room_with_presence(browser, server_factory, redis_url):
    import subprocess
    import sys
    import uuid

    from tests.servers import ROOT

    server = server_factory("daphne", env={"ROCKSTAR_TEST_PREFIX": f"t{uuid.uuid4().hex[:8]}", "REDIS_URL": redis_url})
    page = browser.new_page()
    page.goto(f"{server.http_url}/live/")
    wait(page, "window.live && window.live.getSubscription('news').state === 'subscribed'")
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "ws_publish", "news",
                    json.dumps({"title": "from the shell", "by": "ops"})],
                   cwd=ROOT, env={**server.env}, check=True, timeout=60)
    wait(page, "document.getElementById('news').textContent.includes('from the shell (ops)')")
    page.fill("#password", "alice-password")
    page.click("#login button")
    wait(page, "window.live.getSubscription('room.lobby') && "
               "window.live.getSubscription('room.lobby').state === 'subscribed'")
    page.click("#say button")
    wait(page, "document.getElementById('room').textContent.includes('alice: hi')")
    wait(page, "document.getElementById('who').textContent.startsWith('1 connection(s)')")
    page.close()
