"""The live page's people and series: usernames, tenant names, the chart's data in live.json and
Prometheus, per process and summed across two processes on Redis; the chart in headless Chromium."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from urllib.parse import quote

import pytest
from websockets.exceptions import InvalidStatus

from rockstar_ws.auth.tokens import access_token_for
from tests.auth_helpers import user_ids
from tests.client import connect, recv_json
from tests.conftest import CHROMIUM_ARGS as ARGS
from tests.e2e.test_ops_live import cluster_env, http_get, live, staff_live_page, wait_live

FAST = '{"LIVE_SERIES_INTERVAL": 0.5, "LIVE_PAGE_REFRESH": 0.3, "METRICS_TOKEN": "series-test-token"}'


def last(data: dict) -> dict:
    points = data["series"]["points"]
    return points[-1] if points else {}


async def open_alices(stack: AsyncExitStack, server, server_env, n: int) -> str:
    """``n`` connections of alice on an authenticated route; her user id."""
    uid = str(user_ids(server_env)["alice"])
    token = quote(str(access_token_for(uid)), safe="")
    for _ in range(n):
        ws = await stack.enter_async_context(connect(server, f"/ws/test/auth/open?token={token}"))
        assert (await recv_json(ws))["user_id"] == uid
    return uid


async def test_json_names_users_and_samples_connections_and_handshakes(server_factory, server_env):
    from tests.e2e.test_ops_live import session_cookie

    staff = session_cookie(server_env, "admin")
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": FAST})
    async with AsyncExitStack() as stack:
        uid = await open_alices(stack, server, server_env, 2)
        data = await wait_live(server, staff, lambda d: last(d).get("connections") == 2, timeout=30)
        assert last(data)["connections"] == 2, data["series"]
        assert data["series"]["scope"] == "process" and data["series"]["interval"] == 0.5
        assert data["users"][uid] == {"username": "alice", "url": f"/admin/auth/user/{uid}/change/"}
        assert any(p["handshakes_per_s"] > 0 for p in data["series"]["points"]), data["series"]
        # a refusal (no token: 401) shows up as a rate by status
        status, _, _ = await asyncio.to_thread(http_get, server, "/ws-metrics/",
                                                             token="series-test-token")
        assert status == 200
        with pytest.raises(InvalidStatus):
            async with connect(server, "/ws/test/auth/open"):
                pass
        data = await wait_live(server, staff, lambda d: any(p["refused_per_s"].get("401") for p in
                                                            d["series"]["points"]), timeout=30)
        assert any(p["refused_per_s"].get("401", 0) > 0 for p in data["series"]["points"]), data["series"]
    data = await wait_live(server, staff, lambda d: last(d).get("connections") == 0, timeout=30)
    assert last(data)["connections"] == 0


async def test_series_sum_across_two_processes_on_redis(server_factory, server_env, redis_url):
    from tests.e2e.test_ops_live import session_cookie

    env = cluster_env(redis_url, f"series-{uuid.uuid4().hex[:10]}")
    env["ROCKSTAR_TEST_WS_SETTINGS"] = FAST
    staff = session_cookie(server_env, "admin")
    a, b = server_factory("daphne", env=env), server_factory("daphne", env=env)
    async with AsyncExitStack() as stack:
        await open_alices(stack, a, server_env, 2)
        await open_alices(stack, b, server_env, 1)
        data = await wait_live(a, staff, lambda d: last(d).get("connections") == 3, timeout=30)
        assert data["series"]["scope"] == "cluster" and last(data)["connections"] == 3, data["series"]
        seen = await wait_live(b, staff, lambda d: last(d).get("connections") == 3, timeout=30)
        assert last(seen)["connections"] == 3
        status, _, body = await asyncio.to_thread(http_get, a, "/ws-metrics/",
                                                                token="series-test-token")
        assert status == 200 and b"rockstar_ws_handshakes_per_second" in body
        assert b"rockstar_ws_series_connections" in body
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{env['ROCKSTAR_TEST_PREFIX']}*"))
    if keys:
        client.delete(*keys)
    assert (await live(a, staff))["total"] >= 0


async def test_chart_moves_when_connections_open(chromium, server_factory, server_env):
    from playwright.async_api import async_playwright, expect

    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": FAST})
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            page = await staff_live_page(browser, server)
            chart = page.locator("#live-chart")
            await expect(chart).to_have_attribute("data-last-connections", "0", timeout=20_000)
            async with AsyncExitStack() as stack:
                uid = await open_alices(stack, server, server_env, 3)
                # the page's own data changes: its last sample counts the three connections
                await expect(chart).to_have_attribute("data-last-connections", "3", timeout=20_000)
                assert await page.locator("#live-chart polyline").count() >= 2
                link = page.locator("#live-by_user a")
                await expect(link).to_have_text("alice", timeout=20_000)
                assert await link.get_attribute("href") == f"/admin/auth/user/{uid}/change/"
            await expect(chart).to_have_attribute("data-last-connections", "0", timeout=20_000)
        finally:
            await browser.close()
