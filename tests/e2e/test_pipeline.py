"""The handshake pipeline through a real daphne: a project's own stage runs in its documented
place, refuses before any user code, and its refusal is answered like every other one."""

from __future__ import annotations

from tests.client import connect, recv_json, refusal_status
from tests.conftest import probe


async def test_a_project_stage_refuses_before_the_handler_runs(daphne):
    await probe(daphne, "clear")
    status, _body = await refusal_status(daphne, "/ws/test/staged")
    assert status == 403  # daphne answers every refusal with 403 (docs/protection.md)
    events = await probe(daphne, "events")
    assert events == ["ticket refused"], events
    stats = await probe(daphne, "stats")
    assert stats["refused"].get("403", 0) >= 1, stats


async def test_a_project_stage_admits_and_sits_before_admission(daphne):
    await probe(daphne, "clear")
    async with connect(daphne, "/ws/test/staged?ticket=ok") as ws:
        names = await recv_json(ws)
    assert names[:10] == ["host_and_rate", "tenant", "route", "limits", "route_hook", "tenant_settings",
                          "origin_and_subprotocol", "authentication", "tenant_binding", "selected_subprotocol"], names
    assert names[10] == "ticket", names
    # the live registry's stage (LIVE_REGISTRY on in tests), then the per-user index (rockstar_ws.users)
    assert names[11:] == ["admission", "users"], names
    events = await probe(daphne, "events")
    assert events == ["ticket admitted for /ws/test/staged", "staged handler ran"], events


async def test_a_route_the_stage_does_not_guard_is_untouched(daphne):
    await probe(daphne, "clear")
    async with connect(daphne, "/ws/echo") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
    assert "ticket refused" not in await probe(daphne, "events")
