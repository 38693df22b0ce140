"""Refusals under uvicorn arrive as real HTTP statuses with a JSON body (websocket.http.response)."""

from __future__ import annotations

import json

import pytest

from tests.client import connect, refusal_status


@pytest.mark.parametrize(("path", "status"), [
    ("/ws/does-not-exist", 404),
    ("/ws/test/guarded", 403),
    ("/ws/test/private", 401),
])
async def test_refusal_statuses_and_json_body(uvicorn, path, status):
    got, body = await refusal_status(uvicorn, path)
    assert got == status
    payload = json.loads(body)
    assert payload["status"] == status and payload["error"]


async def test_uvicorn_serves_the_echo_and_closes_with_1011(uvicorn):
    async with connect(uvicorn, "/ws/echo") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
    async with connect(uvicorn, "/ws/test/crash") as ws:
        await ws.send("boom")
        await ws.wait_closed()
        assert ws.close_code == 1011
