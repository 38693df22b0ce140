"""The catalogue of bad inputs and hostile clients, each through a real daphne.

Every attack runs while a well-behaved client (``steady``) sends a message every 20 ms on
/ws/echo and checks each echo; when the attack is over the live count is back to the steady
client alone, and to 0 once it leaves. Attack helpers are in tests/hostile.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus

from tests.client import connect, refusal_status
from tests.conftest import probe, start_server
from tests.hostile import RawClient, frame, handshake
from tests.servers import ServerProcess
from tests.waiting import poll, wait_until_async

pytestmark = pytest.mark.timeout(120)

PROTECT = "tests.protect_settings"


def protect_env(**ws: Any) -> dict[str, str]:
    """Environment of a server process with the protection routes and these ROCKSTAR_WS keys."""
    return {"DJANGO_SETTINGS_MODULE": PROTECT, "ROCKSTAR_TEST_WS_SETTINGS": json.dumps(ws)}


@pytest.fixture(scope="module")
def target(server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The daphne under attack: default limits, short pings, a handshake rate high enough for the
    tests' own handshakes (loopback is not exempt here)."""
    server = start_server("daphne", server_env, tmp_path_factory.mktemp("target"),
                          env=protect_env(HANDSHAKE_RATE=500, HANDSHAKE_BURST=1000, HANDSHAKE_RATE_EXEMPT=[]),
                          args=["--ping-interval", "1", "--ping-timeout", "2"])
    yield server
    server.stop()


async def live(server: ServerProcess) -> int:
    """Live connections, the probe's own excluded."""
    return await probe(server, "connections") - 1


async def wait_live(server: ServerProcess, expected: int, timeout: float = 15.0) -> int:
    return await poll(lambda: live(server), lambda count: count == expected, timeout)


async def events(server: ServerProcess) -> list[str]:
    return await probe(server, "events")


async def wait_event(server: ServerProcess, prefix: str, timeout: float = 15.0) -> str | None:
    async def first() -> str | None:
        return next((e for e in await events(server) if e.startswith(prefix)), None)

    return await poll(first, lambda found: found is not None, timeout)


class Steady:
    """A polite client: one message every 20 ms on /ws/echo, every echo checked in order."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.echoes = 0
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        async with connect(self.server, "/ws/echo") as ws:
            self.ready.set()
            while not self.stop.is_set():
                msg = f"steady {self.echoes}"
                await ws.send(msg)
                assert await asyncio.wait_for(ws.recv(), 10) == msg
                self.echoes += 1
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def steady(server: ServerProcess, min_echoes: int = 5) -> AsyncIterator[Steady]:
    """Run a steady client during the block; afterwards check it saw every echo and that the
    live count is back to that client alone, then to 0 once it has left."""
    assert await wait_live(server, 0) == 0, "connections left over from an earlier test"
    s = Steady(server)
    task = asyncio.ensure_future(s.run())
    await asyncio.wait_for(s.ready.wait(), 10)
    try:
        yield s
        while s.echoes < min_echoes and not task.done():
            await asyncio.sleep(0.02)
        assert await wait_live(server, 1) == 1, "the attack left connections behind"
    finally:
        s.stop.set()
        await asyncio.wait_for(task, 15)  # raises if an echo was missing or wrong
    assert s.echoes >= min_echoes
    assert await wait_live(server, 0) == 0


async def closed_with(ws: Any) -> int | None:
    """Wait until the server closes ``ws``; its close code (messages before it are skipped)."""
    with contextlib.suppress(ClientClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    return ws.close_code


# -- message size -----------------------------------------------------------------------------
async def test_text_at_the_exact_limit_passes_and_one_byte_more_closes_1009(target):
    async with steady(target):
        async with connect(target, "/ws/p/limited") as ws:
            await ws.send("a" * 1000)
            assert await ws.recv() == "a" * 1000
            await ws.send("a" * 1001)
            assert await closed_with(ws) == 1009


async def test_binary_over_the_limit_closes_1009(target):
    async with steady(target):
        async with connect(target, "/ws/p/limited") as ws:
            await ws.send(b"\x00" * 1000)
            assert await ws.recv() == b"\x00" * 1000
            await ws.send(b"\x00" * 1001)
            assert await closed_with(ws) == 1009


async def test_multibyte_text_is_measured_in_utf8_bytes(target):
    async with steady(target):
        async with connect(target, "/ws/p/limited") as ws:
            await ws.send("é" * 500)  # 500 characters, 1000 bytes: at the limit
            assert await ws.recv() == "é" * 500
            await ws.send("€" * 334)  # 334 characters, 1002 bytes: over it
            assert await closed_with(ws) == 1009


async def test_message_over_the_default_1mib_limit_is_cut_off(target):
    """Over 1 MiB daphne's own frame limit acts first: autobahn sends 1009 and drops the TCP
    connection at once, so the client, still sending, usually sees 1006 (docs/protection.md)."""
    async with steady(target):
        async with connect(target, "/ws/echo", max_size=None) as ws:
            await ws.send("z" * (1024 * 1024))
            assert len(await ws.recv()) == 1024 * 1024
            with contextlib.suppress(ClientClosed):
                await ws.send("z" * (1024 * 1024 + 1))
            assert await closed_with(ws) in (1009, 1006)


async def test_fragmented_message_over_the_limit_closes_1009(target):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/p/limited")
        assert raw.status == 101
        await raw.send(frame(1, b"f" * 400, fin=False) + frame(0, b"f" * 400, fin=False) + frame(0, b"f" * 400))
        assert await raw.close_code() == 1009
        raw.close()


async def test_fragments_past_daphnes_own_limit_are_cut_off(target):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo")
        chunk = b"g" * 65536
        try:
            for i in range(20):  # 1.25 MiB in 64 KiB fragments: daphne's 1 MiB message limit
                await raw.send(frame(0 if i else 2, chunk, fin=False))
        except ConnectionError:
            pass
        assert await raw.close_code() in (1009, None)
        raw.close()


async def test_a_frame_header_claiming_an_exabyte_is_refused(target):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo")
        await raw.send(frame(2, b"", length=2**62)[:14])
        assert await raw.close_code() in (1009, 1002, None)
        assert await raw.ended()


# -- floods -------------------------------------------------------------------------------------
async def test_flood_with_default_limits_closes_1008(target):
    async with steady(target):
        async with connect(target, "/ws/echo") as ws:
            for i in range(1000):
                try:
                    await ws.send(f"flood {i}")
                except ClientClosed:
                    break
            assert await closed_with(ws) == 1008
            assert ws.close_reason == "rate limit exceeded"


async def wait_output(server: ServerProcess, text: str, more_than: int, timeout: float = 15.0) -> int:
    """Wait until ``text`` occurs in the server's output more than ``more_than`` times; the count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        count = server.output().count(text)
        if count > more_than or loop.time() > deadline:
            return count
        await asyncio.sleep(0.1)


async def test_flood_on_a_4429_route_closes_4429(target):
    """On granian a client still writing when the close comes may see 1006 (granian ends the TCP
    connection right after the close frame; rockstar_ws lingers until the client pauses, which a
    client descheduled mid-flood can outlast): there the server's log proves the policy closed it."""
    line = "over its message rate (close-4429)"
    async with steady(target):
        before = target.output().count(line)
        async with connect(target, "/ws/p/flood-4429") as ws:
            for i in range(100):
                with contextlib.suppress(ClientClosed):
                    await ws.send(f"{i}")
            code = await closed_with(ws)
        if target.kind == "granian" and code == 1006:
            assert await wait_output(target, line, before) == before + 1
        else:
            assert code == 4429


async def test_flood_on_a_drop_route_drops_and_warns_but_stays_open(target):
    async with steady(target):
        async with connect(target, "/ws/p/flood-drop") as ws:
            for i in range(100):
                await ws.send(f"{i}")
            got = []
            with contextlib.suppress(TimeoutError):
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), 1.0))
            warnings = [json.loads(m) for m in got if m.startswith("{")]
            echoed = [m for m in got if not m.startswith("{")]
            assert warnings and warnings[0]["error"] == "rate_limited" and warnings[0]["dropped"] >= 1
            assert 10 <= len(echoed) < 100  # the burst got through, the rest was dropped
            # Time is the input here, not a wait for the server: the bucket refills with the
            # clock, and a slower machine only lets more tokens in.
            await asyncio.sleep(0.5)
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), 5) == "after"


async def test_inbox_overflow_of_a_handler_that_never_reads_closes_1008(target):
    async with steady(target):
        async with connect(target, "/ws/p/deaf") as ws:
            for i in range(400):
                with contextlib.suppress(ClientClosed):
                    await ws.send(f"{i}")
            assert await closed_with(ws) == 1008
            assert ws.close_reason == "inbox overflow"


async def test_ping_flood_is_answered_and_does_not_starve_others(target):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo")
        await raw.send(b"".join(frame(9, b"p") for _ in range(2000)))
        await raw.send(frame(1, b"after pings"))
        pongs = 0
        while True:
            opcode, payload = await raw.read_frame()
            if opcode == 10:
                pongs += 1
            elif opcode == 1:
                assert payload == b"after pings"
                break
        assert pongs > 0
        raw.close()


async def test_thousands_of_connections_from_one_ip_are_bounded(server_factory):
    """2000 handshakes from 127.0.0.1 at once: the burst gets in, the rest gets 429."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4500:  # 2000 client sockets here, 2000 server sockets in daphne (its own limit)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    server = server_factory("daphne", env=protect_env(HANDSHAKE_RATE=5, HANDSHAKE_BURST=200,
                                                      HANDSHAKE_RATE_EXEMPT=[]))
    async with connect(server, "/ws/echo") as polite:
        clients: list[RawClient] = []
        statuses: dict[int, int] = {}

        async def one() -> None:
            try:
                c = await RawClient.upgrade(server, "/ws/echo")
            except OSError:
                statuses[-1] = statuses.get(-1, 0) + 1
                return
            clients.append(c)
            statuses[c.status] = statuses.get(c.status, 0) + 1

        for batch in range(20):
            await asyncio.gather(*(one() for _ in range(100)))
            await polite.send(f"still {batch}")
            assert await asyncio.wait_for(polite.recv(), 10) == f"still {batch}"
        print(f"2000 handshakes from one IP: {statuses}")
        assert sum(statuses.values()) == 2000
        assert 200 <= statuses.get(101, 0) < 1000, statuses
        assert statuses.get(429, 0) >= 1000, statuses
        for c in clients:
            c.close()
    count = None
    for _ in range(100):  # the probe's own handshakes count too: wait for tokens when refused
        with contextlib.suppress(InvalidStatus):
            count = await live(server)
            if count == 0:
                break
        await asyncio.sleep(0.5)
    assert count == 0
    assert "429 too many handshakes" in server.output()


# -- origins ----------------------------------------------------------------------------------
async def test_disallowed_origin_is_refused_403_and_no_handler_runs(target):
    async with steady(target):
        await probe(target, "clear")
        status, _ = await refusal_status(target, "/ws/p/limited", origin="https://evil.example")
        assert status == 403
        assert not [e for e in await events(target) if e.startswith("echo:/ws/p/limited")]
    assert "neither the Host '127.0.0.1' nor in ALLOWED_HOSTS" in target.output()


async def test_origin_null_is_refused(target):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo", origin="null")
        assert raw.status == 403
        raw.close()


async def test_missing_origin_is_admitted_by_default_and_refused_where_required(target):
    async with steady(target):
        async with connect(target, "/ws/p/limited") as ws:  # the websockets client sends no Origin
            await ws.send("no origin")
            assert await ws.recv() == "no origin"
        status, _ = await refusal_status(target, "/ws/p/strict-origin")
        assert status == 403
        async with connect(target, "/ws/p/strict-origin", origin="http://127.0.0.1") as ws:
            await ws.send("same host")
            assert await ws.recv() == "same host"
    assert "no Origin header and ALLOW_MISSING_ORIGIN is False" in target.output()


async def test_per_route_allowed_origins(target):
    async with steady(target):
        async with connect(target, "/ws/p/partner-origin", origin="https://partner.example") as ws:
            await ws.send("partner")
            assert await ws.recv() == "partner"
        status, _ = await refusal_status(target, "/ws/p/partner-origin", origin="http://localhost")
        assert status == 403  # the route's list replaces ALLOWED_HOSTS


# -- bad handshakes ---------------------------------------------------------------------------
async def test_handshake_without_upgrade_is_not_a_websocket(target):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo", upgrade=False)
        assert raw.status != 101 and raw.status >= 400
        raw.close()


async def test_wrong_websocket_version_is_refused(target):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo", version="99")  # autobahn also speaks draft 8
        assert raw.status in (400, 426)
        raw.close()


async def test_missing_websocket_key_is_refused(target):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo", key=None)
        assert raw.status in (400, 426)
        raw.close()


async def test_garbage_instead_of_http_is_dropped(target):
    async with steady(target):
        raw = await RawClient.open(target)
        await raw.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n")
        assert await raw.ended()
        raw.close()


async def test_huge_handshake_headers_are_refused(target):
    async with steady(target):
        raw = await RawClient.open(target)
        await raw.send(handshake("/ws/echo", target.port, extra=[f"X-Pad-{i}: {'p' * 1000}" for i in range(200)]))
        status = await raw.read_response()
        assert status != 101
        raw.close()


async def served_meanwhile(s: Steady, echoes: int = 20) -> None:
    """Wait until the steady client got ``echoes`` more answers: the server kept serving while
    a hostile connection was open (the event to wait for, instead of a fixed time)."""
    start = s.echoes
    await wait_until_async(lambda: s.echoes >= start + echoes, timeout=60,
                           message=lambda: f"the steady client got {s.echoes - start} of {echoes} echoes")


async def test_half_open_tcp_connection_that_says_nothing(target):
    async with steady(target) as s:
        raw = await RawClient.open(target)
        await served_meanwhile(s)
        assert await live(target) == 1  # a TCP connection without a handshake is no WebSocket
        raw.rst()


async def test_handshake_that_never_completes(target):
    async with steady(target) as s:
        raw = await RawClient.open(target)
        await raw.send(handshake("/ws/echo", target.port, end=False))  # no blank line: never ends
        await served_meanwhile(s)
        assert await live(target) == 1
        raw.close()


async def test_slowloris_header_drip(target):
    async with steady(target):
        raw = await RawClient.open(target)
        request = handshake("/ws/echo", target.port)
        for i in range(0, 60, 2):  # 30 slices of a header, 50 ms apart
            await raw.send(request[i:i + 2])
            await asyncio.sleep(0.05)
        raw.rst()


async def test_subprotocol_garbage_is_harmless(target):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo", extra=["Sec-WebSocket-Protocol: " + ",".join(["x"] * 500)])
        assert raw.status in (101, 400)  # autobahn refuses a repeated subprotocol name
        assert "sec-websocket-protocol" not in raw.response_headers
        raw.close()


# -- bad frames after the handshake -------------------------------------------------------------
@pytest.mark.parametrize(("name", "data", "codes"), [
    ("invalid UTF-8 in a text frame", frame(1, b"ok \xff\xfe bad"), (1007,)),
    ("a control frame over 125 bytes", frame(9, b"p" * 200), (1002,)),
    ("an unmasked client frame", frame(1, b"hello", mask=False), (1002,)),
    ("reserved bits without an extension", frame(1, b"hello", rsv=4), (1002,)),
    ("an unknown opcode", frame(3, b"hello"), (1002,)),
    ("a continuation without a start", frame(0, b"hello"), (1002,)),
    ("a fragmented control frame", frame(9, b"p", fin=False), (1002,)),
    ("a close frame with an illegal code", frame(8, (999).to_bytes(2, "big")), (1002,)),
    ("a close frame with a one-byte payload", frame(8, b"\x03"), (1002,)),
    ("a new message inside a fragmented one", frame(1, b"a", fin=False) + frame(1, b"b"), (1002,)),
])
async def test_protocol_violations_close_the_connection(target, name, data, codes):
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo")
        assert raw.status == 101
        await raw.send(data)
        # autobahn fails the connection by dropping it (failByDrop): the close frame may not come
        assert await raw.close_code() in (*codes, None), name
        assert await raw.ended(), name


async def test_client_vanishing_mid_message(target):
    async with steady(target) as s:
        raw = await RawClient.upgrade(target, "/ws/echo")
        assert await wait_live(target, 2) == 2
        await raw.send(frame(1, b"x" * 5000)[:2000])  # half a frame, then RST
        await served_meanwhile(s, 5)
        raw.rst()


async def test_client_vanishing_between_fragments(target):
    async with steady(target) as s:
        raw = await RawClient.upgrade(target, "/ws/echo")
        await raw.send(frame(1, b"first half ", fin=False))
        await served_meanwhile(s, 5)
        raw.rst()


# -- handlers and inputs ----------------------------------------------------------------------
async def test_invalid_json_closes_1007(target):
    async with steady(target):
        await probe(target, "clear")
        async with connect(target, "/ws/p/json") as ws:
            await ws.send('{"ok": 1}')
            assert json.loads(await ws.recv()) == {"got": {"ok": 1}}
            await ws.send("{not json")
            assert await closed_with(ws) == 1007
            assert ws.close_reason == "invalid JSON"
        assert await wait_event(target, "json:closed:1007")


async def test_invalid_json_to_a_sync_handler_closes_1007(target):
    async with steady(target):
        async with connect(target, "/ws/p/sync-json") as ws:
            await ws.send("[1, 2]")
            assert json.loads(await ws.recv()) == {"got": [1, 2]}
            await ws.send(b"\xff not json")
            assert await closed_with(ws) == 1007


async def test_json_nested_too_deep_closes_1007(target):
    async with steady(target):
        async with connect(target, "/ws/p/json") as ws:
            await ws.send("[" * 100_000 + "]" * 100_000)
            assert await closed_with(ws) == 1007


async def test_json_over_read_json_max_size_closes_1009(target):
    async with steady(target):
        async with connect(target, "/ws/p/json-small") as ws:
            await ws.send(json.dumps({"a": "b" * 10}))
            assert json.loads(await ws.recv()) == {"got": {"a": "b" * 10}}
            await ws.send(json.dumps({"a": "b" * 100}))
            assert await closed_with(ws) == 1009


async def test_handler_raising_closes_1011_and_logs_the_route(target):
    async with steady(target):
        async with connect(target, "/ws/test/crash") as ws:
            await ws.send("boom")
            assert await closed_with(ws) == 1011
    # The log names the handler (the route has no middleware, so no line may blame one).
    out = await wait_until_async(lambda: "RuntimeError: handler bug" in target.output() and target.output(),
                                 message=target.output)
    assert "handler of /ws/test/crash raised (tests.testapp.ws_routes.crashing)" in out
    assert "middleware of /ws/test/crash" not in out


async def test_handler_returning_closes_1000(target):
    async with steady(target):
        async with connect(target, "/ws/test/returns") as ws:
            assert await ws.recv() == "bye"
            assert await closed_with(ws) == 1000


async def test_client_that_never_reads_gets_its_writes_failed_with_1013(target):
    async with steady(target):
        await probe(target, "clear")
        raw = await RawClient.upgrade(target, "/ws/p/firehose")
        assert raw.status == 101
        # never read: daphne's buffer grows past WRITE_BUFFER_LIMIT and the handler's write fails
        event = await wait_event(target, "firehose:closed:")
        assert event == "firehose:closed:1013:client too slow"
        raw.rst()


async def test_idle_client_is_closed_4408(target):
    async with steady(target):
        async with connect(target, "/ws/p/idle") as ws:
            # Messages for twice the 0.5 s idle timeout keep it open. The pause between them is
            # pacing under MESSAGE_RATE (at most 50/s), 25 times shorter than the idle timeout,
            # so a loaded machine does not stretch it past the timeout.
            loop = asyncio.get_running_loop()
            until, i = loop.time() + 1.0, 0
            while loop.time() < until:
                await ws.send(f"{i}")
                assert await ws.recv() == f"{i}"
                i += 1
                await asyncio.sleep(0.02)
            assert await closed_with(ws) == 4408
            assert ws.close_reason == "idle timeout"


async def test_read_timeout_leaves_the_connection_open(target):
    async with steady(target):
        async with connect(target, "/ws/p/read-timeout") as ws:
            assert await asyncio.wait_for(ws.recv(), 5) == "timeout"
            await ws.send("still open")
            got = await asyncio.wait_for(ws.recv(), 5)
            while got == "timeout":
                got = await asyncio.wait_for(ws.recv(), 5)
            assert got == "still open"


async def test_client_that_stops_answering_pings_is_dropped(target):
    """A half-open connection: a raw client completes the handshake, then never reads nor
    answers, as a peer that vanished without a FIN. daphne's ping (--ping-interval 1
    --ping-timeout 2 on this server) drops it and the live count goes back down."""
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/echo")
        assert raw.status == 101
        assert await wait_live(target, 2) == 2
        assert await wait_live(target, 1, timeout=20) == 1
        raw.close()


async def test_handshake_refusals_count_and_the_handshake_rate_says_429(server_factory):
    server = server_factory("daphne", env=protect_env(HANDSHAKE_RATE=1, HANDSHAKE_BURST=3, HANDSHAKE_RATE_EXEMPT=[]))
    statuses = []
    for _ in range(5):
        try:
            async with connect(server, "/ws/echo"):
                statuses.append(101)
        except InvalidStatus as exc:
            statuses.append(exc.response.status_code)
    assert statuses[:3] == [101, 101, 101] and statuses[3:] == [429, 429]
    assert "too many handshakes" in server.output()
