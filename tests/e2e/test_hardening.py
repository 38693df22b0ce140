"""Handshake hardening through real daphne and uvicorn processes: the subprotocol header, log
injection, the Host header (DNS rebinding), the order of the cheap checks, and deep JSON.

Each attack is a hand-built handshake (tests/hostile.py). "Nothing ran" is read from the server
process itself: the probe's event list (handlers record themselves) and its counters, where the
only connection opened between two readings is the probe's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.client import connect
from tests.conftest import probe, start_server
from tests.hostile import RawClient
from tests.servers import ServerProcess
from tests.test_protection_e2e import closed_with, protect_env
from tests.waiting import wait_until_async

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(request: pytest.FixtureRequest, server_env: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A daphne, then a uvicorn, with the protection test routes and default limits."""
    proc = start_server(request.param, server_env, tmp_path_factory.mktemp(f"hardening-{request.param}"),
                        env=protect_env())
    yield proc
    proc.stop()


async def counters(server: ServerProcess) -> dict[str, Any]:
    return await probe(server, "stats")


async def events(server: ServerProcess) -> list[str]:
    return await probe(server, "events")


async def wait_for_log(server: ServerProcess, needle: str, timeout: float = 20.0) -> str:
    """The first line of the server's output that contains ``needle``, polled until ``timeout``."""
    def line() -> str | None:
        return next((line for line in server.output().splitlines() if needle in line), None)

    return await wait_until_async(line, timeout, 0.1, message=f"no log line with {needle!r} within {timeout}s")


class NothingRan:
    """Counters and events before an attack; ``check()`` afterwards asserts that the attack
    opened no connection and ran no handler."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server

    async def __aenter__(self) -> NothingRan:
        await probe(self.server, "clear")
        self.before = await counters(self.server)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is not None:
            return
        after = self.after = await counters(self.server)
        # The one connection opened in between is the probe that read ``after``.
        assert after["opened"] - self.before["opened"] == 1, (self.before, after)
        self.events = await events(self.server)
        assert [e for e in self.events if not e.startswith("picker-mw")] == [], self.events
        assert await probe(self.server, "connections") == 1  # the probe alone

    def refused(self, status: int) -> int:
        """Handshakes refused with ``status`` during the block."""
        return self.after["refused"].get(str(status), 0) - self.before["refused"].get(str(status), 0)


async def upgrade(server: ServerProcess, path: str, *headers: str, host: str | None = None) -> RawClient:
    return await RawClient.upgrade(server, path, extra=list(headers), host=host)


# -- item 1: subprotocols ---------------------------------------------------------------------
async def test_percent_encoded_comma_in_the_subprotocol_header_makes_no_phantom(server):
    """daphne decodes ``x%2Crockstar.bearer`` into ``x`` and the marker; accepting with the marker
    would hang the handshake after counting it. Refused 400 on daphne, before any count or
    handler; uvicorn keeps it as one unknown name and completes a handshake without one."""
    header = "Sec-WebSocket-Protocol: x%2Crockstar.bearer"
    if server.kind == "daphne":
        async with NothingRan(server) as nothing:
            for path in ("/ws/p/greeter", "/ws/test/private", "/ws/nowhere"):
                raw = await upgrade(server, path, header)
                assert raw.status == 400, path
                assert "sec-websocket-protocol" not in raw.response_headers
                raw.close()
        assert nothing.refused(400) == 3
        line = await wait_for_log(server, "malformed Sec-WebSocket-Protocol")
        assert "['x', 'rockstar.bearer']" in line
    else:
        await probe(server, "clear")
        raw = await upgrade(server, "/ws/p/greeter", header)
        assert raw.status == 101
        assert "sec-websocket-protocol" not in raw.response_headers
        opcode, payload = await raw.read_frame()
        assert (opcode, payload) == (1, b"hello None")  # the handshake really completed
        raw.close()
        assert "greeter:None" in await events(server)


async def test_a_subprotocol_the_client_did_not_send_is_refused_400(server):
    """Middleware that picks a name the client never offered gets a 400, not a hanging
    handshake: the handler does not run and nothing is counted."""
    async with NothingRan(server) as nothing:
        raw = await upgrade(server, "/ws/p/bad-pick", "Sec-WebSocket-Protocol: chat.v1")
        assert raw.status == 400
        raw.close()
    assert nothing.refused(400) == 1
    assert "picker-mw" in nothing.events  # the refusal came after the middleware
    await wait_for_log(server, "subprotocol 'never.offered' was selected but the client did not offer it")


async def test_subprotocols_offered_verbatim_are_still_selected(server):
    raw = await upgrade(server, "/ws/p/chat-v1", "Sec-WebSocket-Protocol: x ,  chat.v1")
    assert raw.status == 101
    assert raw.response_headers.get("sec-websocket-protocol") == "chat.v1"
    assert await raw.read_frame() == (1, b"hello chat.v1")
    raw.close()
    async with connect(server, "/ws/p/greeter", subprotocols=["rockstar.bearer"]) as ws:
        assert ws.subprotocol == "rockstar.bearer"
        assert await ws.recv() == "hello rockstar.bearer"


async def test_non_ascii_subprotocol_is_refused_before_the_application(server):
    """``café`` (UTF-8 on the wire): uvicorn refuses it with 400. daphne fails inside its own
    header decoding with a 500, before it creates the application instance, so rockstar_ws is
    never called (docs/protection.md says why it cannot answer instead). Either way nothing
    of the application runs and nothing is counted."""
    header = "Sec-WebSocket-Protocol: café".encode().decode("latin-1")
    async with NothingRan(server):
        raw = await upgrade(server, "/ws/p/greeter", header)
        assert raw.status == (400 if server.kind == "uvicorn" else 500)
        raw.close()


async def test_close_mode_refusal_never_accepts_with_a_decoded_name(server_factory):
    """In close mode a refusal is an accept and a close: with the decoded marker that accept
    would hang too. It accepts with no subprotocol and closes with 4400."""
    server = server_factory("daphne", env=protect_env(REFUSAL_MODE="close"))
    raw = await upgrade(server, "/ws/p/greeter", "Sec-WebSocket-Protocol: x%2Crockstar.bearer")
    assert raw.status == 101
    assert "sec-websocket-protocol" not in raw.response_headers
    assert await raw.close_code() == 4400
    raw.close()
    assert await events(server) == []


# -- item 2: log injection --------------------------------------------------------------------
async def test_control_characters_in_the_path_cannot_forge_a_log_line(server):
    forged = "2026-01-01 00:00:00,000 INFO rockstar_ws.refusals: forged"
    encoded = forged.replace(" ", "%20").replace(",", "%2C").replace(":", "%3A")
    path = f"/ws/nowhere-{server.kind}%0d%0a{encoded}%1b%5b2J%c2%85%e2%80%a8end"
    raw = await upgrade(server, path)
    assert raw.status == 404
    raw.close()
    line = await wait_for_log(server, f"refused 127.0.0.1/ws/nowhere-{server.kind}")
    assert f"\\r\\n{forged}\\x1b[2J\\x85\\u2028end" in line
    # Nothing the client sent starts a line of its own, whichever characters a reader splits on.
    assert not [ln for ln in server.output().splitlines() if ln.startswith(forged) or ln.startswith("end")]


async def test_a_huge_host_is_cut_short_in_the_log(server):
    host = "h" * 4000 + ".example"
    raw = await upgrade(server, "/ws/p/greeter", host=host)
    assert raw.status == 400
    raw.close()
    line = await wait_for_log(server, "refused hhhh")
    assert "400 host not allowed" in line and "...[+" in line
    assert len(line) < 1500  # the host and the detail bounded, not 8,000 characters


# -- item 3: the Host header ------------------------------------------------------------------
async def test_dns_rebinding_host_is_refused_400_before_anything_runs(server):
    """A rebinding page sends its own name as both Host and Origin: the origin check alone
    would admit it. Django's host validation refuses it, as Django refuses it on HTTP."""
    rebound = f"rebind.attacker.example:{server.port}"
    async with NothingRan(server) as nothing:
        for host in (rebound, "evil.example@127.0.0.1", "127.0.0.1:80:80", "localhost.evil.example"):
            raw = await upgrade(server, "/ws/p/greeter", f"Origin: http://{rebound}", host=host)
            assert raw.status == 400, host
            raw.close()
    assert nothing.refused(400) == 4
    line = await wait_for_log(server, "refused rebind.attacker.example/ws/p/greeter")
    assert "400 host not allowed" in line and "not valid or not in ALLOWED_HOSTS" in line


async def test_hosts_in_allowed_hosts_are_admitted(server):
    for host in (f"localhost:{server.port}", "LOCALHOST", "tenant1.localhost", f"127.0.0.1:{server.port}"):
        raw = await upgrade(server, "/ws/p/greeter", host=host)
        assert raw.status == 101, host
        assert await raw.read_frame() == (1, b"hello None")
        raw.close()


# -- item 4: the cheap checks first -----------------------------------------------------------
async def test_the_handshake_rate_counts_unknown_paths_and_comes_before_the_lookups(server_factory):
    """Three tokens, one every 100 s: three handshakes to unknown paths spend them (404), then
    a real route and an unknown path alike get 429. A foreign Host is refused 400 before it
    would count."""
    server = server_factory("daphne", env=protect_env(HANDSHAKE_RATE=0.01, HANDSHAKE_BURST=3,
                                                      HANDSHAKE_RATE_EXEMPT=[]))
    statuses = []
    for path, host in [("/ws/nowhere", None)] * 3 + [("/ws/p/greeter", "rebind.attacker.example"),
                                                     ("/ws/p/greeter", None), ("/ws/nowhere", None)]:
        raw = await upgrade(server, path, host=host)
        statuses.append(raw.status)
        raw.close()
    assert statuses == [404, 404, 404, 400, 429, 429]
    await wait_for_log(server, "refused 127.0.0.1/ws/nowhere from 127.0.0.1")
    assert server.output().count("429 too many handshakes") == 2


# -- item 8: deep JSON ------------------------------------------------------------------------
@pytest.mark.parametrize("payload", ["[" * 100_000 + "]" * 100_000, "not json", '{"text": [' * 5_000])
async def test_a_demo_room_closes_1007_on_json_it_cannot_read(daphne, payload):
    async with connect(daphne, "/ws/rooms/deep-json?name=deep") as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(payload)
        assert await closed_with(ws) == 1007
        assert ws.close_reason == "invalid JSON"
    assert "RecursionError" not in daphne.output()


async def test_a_refresh_message_nested_too_deep_closes_4400(daphne, server_env):
    """The token-refresh message is JSON the library parses itself: too deep is malformed too."""
    from rockstar_ws.auth.tokens import access_token_for
    from tests.auth_helpers import probe_id, user_ids, with_token

    token = str(access_token_for(user_ids(server_env)["alice"], scopes=["chat:read"], tenant="tenant1"))
    async with connect(daphne, with_token("/ws/test/auth/any", token, probe_id())) as ws:
        await ws.recv()
        await ws.send('{"rockstar.refresh": ' + "[" * 100_000 + "]" * 100_000 + "}")
        assert await closed_with(ws) == 4400
        assert ws.close_reason == "malformed refresh message"
    assert "RecursionError" not in daphne.output()
