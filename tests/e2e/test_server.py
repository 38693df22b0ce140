"""The core through a real daphne and a real client: the reference's examples and the Go checklist."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed

from tests.client import connect, recv_json, refusal_status
from tests.conftest import probe
from tests.waiting import poll, wait_until_async


async def wait_connections(server, expected: int, timeout: float = 10.0) -> int:
    """Poll the live count (the probe's own connection excluded) until it equals ``expected``."""
    async def count() -> int:
        return await probe(server, "connections") - 1

    return await poll(count, lambda n: n == expected, timeout)


async def events(server) -> list[str]:
    return await probe(server, "events")


async def _has_event(server, event: str) -> bool:
    return event in await events(server)


async def test_echo_text_and_binary_keep_their_type(daphne):
    async with connect(daphne, "/ws/echo") as ws:
        await ws.send("Hello Server!")
        assert await ws.recv() == "Hello Server!"
        await ws.send(b"\x01\x02\x03")
        assert await ws.recv() == b"\x01\x02\x03"


async def test_several_messages_in_a_row(daphne):
    async with connect(daphne, "/ws/echo") as ws:
        for i in range(50):
            await ws.send(f"m{i}")
        assert [await ws.recv() for _ in range(50)] == [f"m{i}" for i in range(50)]


async def test_echo_with_logging_middleware(daphne):
    async with connect(daphne, "/ws/echo-logged") as ws:
        await ws.send("logged")
        assert await ws.recv() == "logged"
    await wait_until_async(lambda: "WebSocket connection ended" in daphne.output(), message=daphne.output)


async def test_remote_and_local_addr_are_ip_port(daphne):
    async with connect(daphne, "/ws/test/info") as ws:
        info = await recv_json(ws)
        local = ws.local_address
    assert info["remote_addr"] == f"127.0.0.1:{local[1]}"
    assert info["local_addr"] == f"127.0.0.1:{daphne.port}"


async def test_unknown_route_is_refused_and_runs_nothing(daphne):
    status, _ = await refusal_status(daphne, "/ws/does-not-exist")
    assert status == 404
    stats = await probe(daphne, "stats")
    assert stats["refused"].get("404", 0) >= 1


async def test_path_parameters(daphne):
    async with connect(daphne, "/ws/test/items/42/hello-world?x=1&x=2&y=") as ws:
        info = await recv_json(ws)
    assert info["path_params"] == {"item_id": "42", "slug": "hello-world"}
    assert info["query"] == {"x": ["1", "2"], "y": [""]}
    status, _ = await refusal_status(daphne, "/ws/test/items/not-a-number/x")
    assert status == 404


async def test_host_routes_first_then_global(daphne):
    async with connect(daphne, "/ws/test/lookup", host="special.localhost") as ws:
        assert await ws.recv() == "host:special.localhost"
    async with connect(daphne, "/ws/test/lookup") as ws:
        assert await ws.recv() == "global"


async def test_host_matching_ignores_case_and_port(daphne):
    async with connect(daphne, "/ws/test/lookup", host=f"SPECIAL.LocalHost:{daphne.port}") as ws:
        assert await ws.recv() == "host:special.localhost"


async def test_wildcard_hosts(daphne):
    async with connect(daphne, "/ws/test/lookup", host="a.wild.localhost") as ws:
        assert await ws.recv() == "host:a.wild.localhost"
    async with connect(daphne, "/ws/test/lookup", host="x.y.wild.localhost") as ws:
        assert await ws.recv() == "host:x.y.wild.localhost"
    # the bare domain is not a subdomain: the global route answers
    async with connect(daphne, "/ws/test/lookup", host="wild.localhost") as ws:
        assert await ws.recv() == "global"
    # a host route exists only on its host
    status, _ = await refusal_status(daphne, "/ws/test/where", host="other.localhost")
    assert status == 404
    async with connect(daphne, "/ws/test/where", host="exact.wild.localhost") as ws:
        assert (await recv_json(ws))["host"] == "exact.wild.localhost"


async def test_reference_multi_tenant_example_hosts(daphne):
    for host, tenant in (("tenant1.localhost", "tenant1"), ("tenant2.localhost", "tenant2")):
        async with connect(daphne, "/ws/chat", host=host) as ws:
            await ws.send("hi")
            assert await ws.recv() == f"[{tenant}] hi"


async def test_middleware_order_outermost_first(daphne):
    await probe(daphne, "clear")
    async with connect(daphne, "/ws/test/mw-order") as ws:
        assert await recv_json(ws) == ["outer", "middle", "inner"]

    async def order() -> list[str] | None:  # complete once the outermost middleware has returned
        got = [e for e in await events(daphne) if ":" in e or e == "handler"]
        return got if "outer:after" in got else None
    got = await wait_until_async(order)
    assert got == ["outer:before", "middle:before", "inner:before", "handler",
                   "inner:after", "middle:after", "outer:after"]


async def test_middleware_refuses_handshake_and_handler_never_runs(daphne):
    await probe(daphne, "clear")
    status, _ = await refusal_status(daphne, "/ws/test/guarded")
    assert status == 403
    assert await events(daphne) == ["refusing_mw"]
    async with connect(daphne, "/ws/test/guarded?let=in") as ws:
        assert await ws.recv() == "inside"
    assert "guarded-handler" in await events(daphne)


async def test_authenticated_route_refuses_without_token(daphne):
    status, _ = await refusal_status(daphne, "/ws/test/private")
    assert status == 401


async def test_sync_handler_runs_blocking_loop_with_orm(daphne):
    async with connect(daphne, "/ws/test/sync") as ws:
        assert (await ws.recv()).startswith("sync users=")
        await ws.send("one")
        assert await ws.recv() == "one"
        await ws.send(b"two")
        assert await ws.recv() == b"two"


async def test_handler_raising_closes_1011_and_server_keeps_serving(daphne):
    async with connect(daphne, "/ws/test/crash") as ws:
        await ws.send("boom")
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1011
    async with connect(daphne, "/ws/echo") as ws:
        await ws.send("still here")
        assert await ws.recv() == "still here"


async def test_handler_returning_closes_1000(daphne):
    async with connect(daphne, "/ws/test/returns") as ws:
        assert await ws.recv() == "bye"
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1000


async def test_write_and_read_after_close_fail(daphne):
    await probe(daphne, "clear")
    async with connect(daphne, "/ws/test/after-close") as ws:
        await ws.send("close please")
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1000
        assert ws.close_reason == "bye"

    async def both() -> bool:
        evs = await events(daphne)
        return "write-after-close:1000" in evs and "read-after-close" in evs
    assert await wait_until_async(both)


async def test_cancellation_reaches_the_handler_context(daphne):
    await probe(daphne, "clear")
    async with connect(daphne, "/ws/test/cancel") as ws:
        assert await ws.recv() == "waiting"
    assert await wait_until_async(lambda: _has_event(daphne, "ctx-done:True:True:True"))


async def test_push_only_handler_learns_the_client_left(daphne):
    await probe(daphne, "clear")
    async with connect(daphne, "/ws/test/push") as ws:
        assert (await ws.recv()).startswith("tick")
    assert await wait_until_async(lambda: _has_event(daphne, "push-only:ended"))


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_a_handler_busy_after_reading_learns_the_client_left(request, kind):
    """On daphne and uvicorn the pump parks after handing a message to a waiting reader, and
    the reader receives for itself; a handler that then waits elsewhere still sees the close."""
    server = request.getfixturevalue(kind)
    await probe(server, "clear")
    async with connect(server, "/ws/test/reads-then-waits") as ws:
        await ws.send("one")
        assert await ws.recv() == "got one"
        await ws.send("two")
        assert await ws.recv() == "got two"
    assert await wait_until_async(lambda: _has_event(server, "reads-then-waits:True:True"))


async def test_echo_stays_in_order_across_the_pump_parking(daphne):
    """Bursts and single round trips mixed: the pump and the handler take turns receiving,
    and no message is lost, duplicated or reordered."""
    async with connect(daphne, "/ws/echo") as ws:
        expected = []
        for i in range(40):  # 160 messages: within the test settings' burst of MESSAGE_RATE
            burst = [f"{i}.{j}" for j in range(i % 7 + 1)]
            for text in burst:
                await ws.send(text)
            expected.extend(burst)
            if i % 3 == 0:
                got = [await asyncio.wait_for(ws.recv(), 30) for _ in expected]
                assert got == expected
                expected = []
        got = [await asyncio.wait_for(ws.recv(), 30) for _ in expected]
        assert got == expected


async def test_upgrader_message_size_limit_takes_effect(daphne):
    async with connect(daphne, "/ws/test/small") as ws:
        await ws.send("x" * 16)
        assert await ws.recv() == "x" * 16
        await ws.send("y" * 17)
        with pytest.raises(ClientClosed):
            await ws.recv()
        assert ws.close_code == 1009


async def test_connection_count_goes_up_and_back_to_zero(daphne):
    assert await wait_connections(daphne, 0) == 0
    clients = [await connect(daphne, "/ws/echo") for _ in range(5)]
    assert await wait_connections(daphne, 5) == 5
    for c in clients[:3]:
        await c.close()
    assert await wait_connections(daphne, 2) == 2
    for c in clients[3:]:
        await c.close()
    assert await wait_connections(daphne, 0) == 0


async def test_vanishing_clients_leave_the_count(daphne):
    """Clients that drop TCP without a close frame are gone from the count too."""
    assert await wait_connections(daphne, 0) == 0
    socks = []
    for _ in range(3):
        ws = await connect(daphne, "/ws/echo")
        socks.append(ws)
    assert await wait_connections(daphne, 3) == 3
    for ws in socks:
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        ws.transport.abort()  # RST, no close frame
    assert await wait_connections(daphne, 0) == 0


async def test_bad_upgrade_request_is_refused(daphne):
    reader, writer = await asyncio.open_connection("127.0.0.1", daphne.port)
    writer.write(b"GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")  # no Sec-WebSocket-Key
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert line.split()[1] in (b"400", b"426")
    async with connect(daphne, "/ws/echo") as ws:
        await ws.send(json.dumps({"ok": True}))
        assert json.loads(await ws.recv()) == {"ok": True}
