"""The "Live connections" admin page in headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

from tests.client import connect
from tests.conftest import CHROMIUM_ARGS as ARGS
from tests.e2e.test_ops_live import LIVE, session_cookie, staff_live_page


async def test_staff_sees_counts_update_without_reload_and_non_staff_is_kept_out(chromium, server_factory,
                                                                                    server_env):
    from playwright.async_api import async_playwright, expect

    server = server_factory("daphne")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            page = await staff_live_page(browser, server)
            total = page.locator("#live-total")
            await expect(total).to_have_text("0", timeout=10_000)
            await page.evaluate("window.__notReloaded = true")

            clients = [await connect(server, LIVE) for _ in range(3)]
            await expect(total).to_have_text("3", timeout=10_000)
            await expect(page.locator("#live-by_route")).to_contain_text(LIVE)
            await clients[0].close()
            await expect(total).to_have_text("2", timeout=10_000)
            assert await page.evaluate("window.__notReloaded === true")  # updated in place, never reloaded
            for ws in clients[1:]:
                await ws.close()
            await expect(total).to_have_text("0", timeout=10_000)

            # A non-staff user: the admin login refuses her, and her own session gets neither page nor JSON.
            other = await browser.new_context()
            alice = await other.new_page()
            await alice.goto(f"{server.http_url}/admin/login/?next=/admin/rockstar_ws/live/")
            await alice.fill("#id_username", "alice")
            await alice.fill("#id_password", "alice-password")
            await alice.click("input[type=submit]")
            await expect(alice.locator(".errornote")).to_be_visible()
            name, _, value = session_cookie(server_env, "alice").partition("=")
            await other.add_cookies([{"name": name, "value": value, "url": server.http_url}])
            await alice.goto(f"{server.http_url}/admin/rockstar_ws/live/")
            assert "/admin/login/" in alice.url
            assert await alice.locator("#live-total").count() == 0
            response = await alice.goto(f"{server.http_url}/admin/rockstar_ws/live.json")
            assert response.status == 403
            assert "total" not in await response.text()
        finally:
            await browser.close()
