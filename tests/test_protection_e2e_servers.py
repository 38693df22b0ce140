"""The hostile-client catalogue of tests/test_protection_e2e.py on uvicorn and granian too.

The tests below are the daphne catalogue's own functions, collected again here with a ``target``
fixture parametrised by server; they are the ones whose outcome rockstar_ws decides (sizes,
rates, origins, handlers, write limits) or that only require the server to keep serving others.
Those that assert a daphne (autobahn) answer to a malformed request or frame, or daphne's ping
flags, stay in the daphne catalogue; docs/protection.md says per server what holds.
Also here, on all three servers: one answer to an Origin header that is not an origin, and a
token in a 12 KB Authorization header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests import test_protection_e2e as catalogue
from tests.client import refusal_status
from tests.conftest import start_server
from tests.hostile import RawClient, frame
from tests.servers import ServerProcess
from tests.test_protection_e2e import protect_env, steady

pytestmark = pytest.mark.timeout(120)

SERVERS = ["daphne", "uvicorn", "granian"]
# uvicorn's default WebSocket implementation parses the handshake with the websockets library,
# whose header lines are limited to 8 KiB (WEBSOCKETS_MAX_LINE_LENGTH): raised for the 12 KB test.
UVICORN_ENV = {"WEBSOCKETS_MAX_LINE_LENGTH": "32768"}


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def target(request: pytest.FixtureRequest, server_env: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server under attack, with the daphne catalogue's settings."""
    kind = request.param
    env = protect_env(HANDSHAKE_RATE=500, HANDSHAKE_BURST=1000, HANDSHAKE_RATE_EXEMPT=[])
    if kind == "uvicorn":
        env.update(UVICORN_ENV)
    server = start_server(kind, server_env, tmp_path_factory.mktemp(f"target-{kind}"), env=env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def any_server(request: pytest.FixtureRequest, server_env: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    kind = request.param
    env = protect_env(HANDSHAKE_RATE=500, HANDSHAKE_BURST=1000, HANDSHAKE_RATE_EXEMPT=[])
    if kind == "uvicorn":
        env.update(UVICORN_ENV)
    server = start_server(kind, server_env, tmp_path_factory.mktemp(f"any-{kind}"), env=env)
    yield server
    server.stop()


_SHARED = [
    "test_text_at_the_exact_limit_passes_and_one_byte_more_closes_1009",
    "test_binary_over_the_limit_closes_1009",
    "test_multibyte_text_is_measured_in_utf8_bytes",
    "test_fragmented_message_over_the_limit_closes_1009",
    "test_flood_on_a_4429_route_closes_4429",
    "test_flood_on_a_drop_route_drops_and_warns_but_stays_open",
    "test_disallowed_origin_is_refused_403_and_no_handler_runs",
    "test_origin_null_is_refused",
    "test_missing_origin_is_admitted_by_default_and_refused_where_required",
    "test_per_route_allowed_origins",
    "test_half_open_tcp_connection_that_says_nothing",
    "test_handshake_that_never_completes",
    "test_slowloris_header_drip",
    "test_client_vanishing_mid_message",
    "test_client_vanishing_between_fragments",
    "test_invalid_json_closes_1007",
    "test_invalid_json_to_a_sync_handler_closes_1007",
    "test_json_nested_too_deep_closes_1007",
    "test_json_over_read_json_max_size_closes_1009",
    "test_handler_raising_closes_1011_and_logs_the_route",
    "test_handler_returning_closes_1000",
    "test_client_that_never_reads_gets_its_writes_failed_with_1013",
    "test_idle_client_is_closed_4408",
    "test_read_timeout_leaves_the_connection_open",
]
for _name in _SHARED:
    globals()[_name] = getattr(catalogue, _name)


async def test_flood_with_default_limits_is_closed_by_the_policy(target):
    """uvicorn delivers the 1008. granian ends the TCP connection right after the close frame;
    rockstar_ws lingers until the flood pauses, so the 1008 normally arrives, but a client
    descheduled mid-flood for longer than the linger may see 1006: the log shows the policy closed it."""
    line = "over its message rate (close)"
    async with steady(target):
        before = target.output().count(line)
        async with catalogue.connect(target, "/ws/echo") as ws:
            for i in range(1000):
                try:
                    await ws.send(f"flood {i}")
                except catalogue.ClientClosed:
                    break
            code = await catalogue.closed_with(ws)
            assert code == 1008 if target.kind == "uvicorn" else code in (1008, 1006), code
        assert await catalogue.wait_output(target, line, before) == before + 1


async def test_inbox_overflow_of_a_handler_that_never_reads_is_closed_1008(target):
    """As the flood above: on granian a client still sending may see 1006 behind the 1008; the
    handler's own record shows the connection was closed with 1008."""
    async with steady(target):
        await catalogue.probe(target, "clear")
        async with catalogue.connect(target, "/ws/p/deaf") as ws:
            for i in range(400):
                try:
                    await ws.send(f"{i}")
                except catalogue.ClientClosed:
                    break
            code = await catalogue.closed_with(ws)
            assert code == 1008 if target.kind == "uvicorn" else code in (1008, 1006), code
        assert await catalogue.wait_event(target, "deaf:closed:") == "deaf:closed:1008"


@pytest.mark.parametrize("any_server", SERVERS, indirect=True)
@pytest.mark.parametrize("origin", ["", "   ", "foo", "http://", "http://a:99999"])
async def test_an_origin_header_that_is_not_an_origin_is_400_on_every_server(any_server, origin):
    """daphne's parser answers these 400 before the application; rockstar_ws answers the same elsewhere."""
    async with steady(any_server):
        raw = await RawClient.upgrade(any_server, "/ws/echo", origin=origin)
        assert raw.status == 400, (any_server.kind, origin, raw.status)
        raw.close()


@pytest.mark.parametrize("any_server", SERVERS, indirect=True)
async def test_a_token_in_a_12kb_authorization_header_gets_an_http_answer(any_server):
    """A 12 KB header reaches rockstar_ws (uvicorn: with WEBSOCKETS_MAX_LINE_LENGTH raised),
    which refuses the bad token with 401 like any other."""
    status, _ = await refusal_status(any_server, "/ws/test/private",
                                     additional_headers={"Authorization": "Bearer " + "a" * 12000})
    assert status == 401


@pytest.mark.parametrize("any_server", SERVERS, indirect=True)
async def test_invalid_utf8_text_ends_the_connection_on_every_server(any_server):
    async with steady(any_server):
        raw = await RawClient.upgrade(any_server, "/ws/echo")
        assert raw.status == 101
        await raw.send(frame(1, b"ok \xff\xfe bad"))
        assert await raw.close_code() in (1007, None)  # daphne and granian drop the TCP connection
        assert await raw.ended()


async def _end_of(raw: RawClient) -> str:
    """How the server ended the TCP connection: "eof" (a FIN) or "reset" (unread data discarded)."""
    try:
        async with asyncio.timeout(15):
            while await raw.reader.read(65536):
                pass
        return "eof"
    except ConnectionResetError:
        return "reset"


async def test_a_burst_over_the_rate_gets_its_close_code_and_a_clean_end(target):
    """A client writes 512 KiB of frames at once, far past the route's burst of 10, then listens.

    granian ends the TCP connection right after a close frame; had it left the rest of the burst
    unread, Linux would answer with a reset, which makes a client that is still writing lose the
    close frame (1006). rockstar_ws reads until the client pauses, then closes: the close code
    arrives and the connection ends with a FIN.
    """
    async with steady(target):
        raw = await RawClient.upgrade(target, "/ws/p/flood-4429")
        assert raw.status == 101
        await raw.send(b"".join(frame(1, b"%04d" % i + b"b" * 1020) for i in range(512)))
        assert await raw.close_code(timeout=15) == 4429
        assert await _end_of(raw) == "eof"
        raw.close()
