"""Routes and a tenant resolver for the live-registry tests (tests/e2e/test_ops_live.py).

With ``TENANT_RESOLVER = "tests.testapp.live_routes.resolve_test_tenant"``, hosts
``<slug>.tenants.localhost`` resolve to a tenant ``slug`` whose ``max_connections`` comes from
``ROCKSTAR_TEST_TENANT_LIMITS`` (JSON: slug -> limit).
"""

from __future__ import annotations

import json
import os

from rockstar_ws import Context, WebSocketConnection
from rockstar_ws import default_server as ws
from rockstar_ws.tenants import TenantInfo

from .ws_routes import record

TENANT_LIMITS: dict[str, int] = json.loads(os.environ.get("ROCKSTAR_TEST_TENANT_LIMITS", "{}"))


def resolve_test_tenant(host: str) -> TenantInfo | None:
    """A custom TENANT_RESOLVER: ``func(host) -> TenantInfo | None``."""
    if host.endswith(".tenants.localhost"):
        slug = host.split(".", 1)[0]
        return TenantInfo(slug, max_connections=TENANT_LIMITS.get(slug))
    return None


@ws.route("/ws/test/live")
async def live_echo(ctx: Context, conn: WebSocketConnection) -> None:
    """Records that its handler ran (so a test can prove a refused handshake never ran it), then echoes."""
    record(f"live-handler:{ctx.request.tenant_id}:{ctx.request.remote_ip}")
    async for message_type, data in conn:
        await conn.write_message(message_type, data)
