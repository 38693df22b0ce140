"""Pub/sub routes for the end-to-end tests (tests/e2e/test_pubsub.py, the JS client's browser tests).

``/ws/test/pubsub``: every permission kind on its own pattern, publish open where a test publishes.
``/ws/test/pubsub-auth``: the authenticated variant. ``/ws/test/pubsub-handler``: a handler that
subscribes its own connection (``conn.subscribe``) and reports what it got.
"""

from __future__ import annotations

import json

from rockstar_ws import Context, WebSocketConnection
from rockstar_ws import default_server as ws
from rockstar_ws.pubsub.history import Position


async def may_read_orders(principal, group, action) -> bool:
    return principal.user_id is not None and group.endswith(f".{principal.user_id}")


def may_read_ledger(principal, group, action) -> bool:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=principal.user_id, is_staff=True).exists()


RULES = [
    {"pattern": "news", "subscribe": "anyone", "publish": "anyone"},
    {"pattern": "room.*", "subscribe": "anyone", "publish": "anyone", "presence": "anyone"},
    {"pattern": "short.*", "subscribe": "anyone", "publish": "anyone"},
    {"pattern": "brief.*", "subscribe": "anyone", "publish": "anyone"},
    {"pattern": "plain.*", "subscribe": "anyone", "publish": "anyone"},
    {"pattern": "closed", "subscribe": "nobody"},
    {"pattern": "members.*", "subscribe": "authenticated", "publish": "authenticated"},
    {"pattern": "user:{user_id}", "subscribe": "user"},
    {"pattern": "tenant:{tenant_id}:*", "subscribe": "tenant", "publish": ["tenant", {"any_scopes": ["write"]}]},
    {"pattern": "reports.*", "subscribe": {"all_scopes": ["reports", "read"]}},
    {"pattern": "chat.*", "subscribe": {"any_scopes": ["chat:write"]}},
    {"pattern": "vip.*", "subscribe": {"tenants": ["tenant1"]}},
    {"pattern": "orders.*", "subscribe": {"callable": "tests.testapp.pubsub_routes.may_read_orders"}},
    {"pattern": "ledger", "subscribe": {"callable": "tests.testapp.pubsub_routes.may_read_ledger"}},
]

ws.register_pubsub_route("/ws/test/pubsub", permissions=RULES)
ws.register_authenticated_pubsub_route("/ws/test/pubsub-auth", permissions=RULES)


@ws.route("/ws/test/pubsub-handler")
async def handler_subscriber(ctx: Context, conn: WebSocketConnection) -> None:
    """First message: {"group", "since"?}; answers the subscribe result, then forwards each
    publication as {"got": data, "offset": n}."""
    first = await conn.read_json()
    since = first.get("since")

    async def got(pub) -> None:
        await conn.write_json({"got": pub.data, "offset": pub.offset})

    result = await conn.subscribe(first["group"], since=Position(since["offset"], since["epoch"]) if since else None,
                                  on_publication=got)
    await conn.write_message(1, json.dumps({"recovered": result.recovered, "catchup": result.catchup,
                                            "offset": result.position.offset if result.position else None}))
    async for _ in conn:
        pass
