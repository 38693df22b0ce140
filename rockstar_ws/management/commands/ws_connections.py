"""``python manage.py ws_connections``: live connection counts, cluster-wide when Redis is configured."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from rockstar_ws.conf import ws_settings
from rockstar_ws.registry import RedisRegistry, get_registry


class Command(BaseCommand):
    help = ("Print the live WebSocket connections: total and counts by route, tenant, user and process. "
            "Cluster-wide when the registry uses Redis; otherwise only this command's own process is known.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print the JSON the admin page reads.")
        parser.add_argument("--connections", action="store_true", help="Also list every connection.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not ws_settings.LIVE_REGISTRY:
            raise CommandError("ROCKSTAR_WS['LIVE_REGISTRY'] is False: there is no registry to read.")
        registry = get_registry()

        async def read() -> dict[str, Any]:
            try:
                return await registry.snapshot(options["connections"])
            finally:
                await registry.close()

        data = asyncio.run(read())
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        if isinstance(registry, RedisRegistry):
            if data.get("error"):
                raise CommandError(f"the registry's Redis did not answer: {data['error']}")
            self.stdout.write(f"Cluster-wide (Redis registry, key prefix {registry.prefix!r}): "
                              f"{data['total']} live connection(s) in {len(data['by_process'])} process(es)")
        else:
            self.stdout.write(
                "Local view only: no Redis registry is configured, so this command sees its own process, "
                "not your servers. Set REGISTRY_REDIS_URL (or a channels_redis layer) for cluster-wide counts, "
                "or read /admin/rockstar_ws/live.json of a server process.")
            self.stdout.write(f"{data['total']} live connection(s) in this process")
        for title, key in (("process", "by_process"), ("route", "by_route"), ("tenant", "by_tenant"),
                           ("user", "by_user")):
            rows = data[key]
            if rows:
                self.stdout.write(f"\nBy {title}:")
                width = max(len(str(k)) for k in rows)
                for k, n in rows.items():
                    self.stdout.write(f"  {k!s:<{width}}  {n}")
        if options["connections"]:
            self.stdout.write("\nConnections:")
            for r in data["connections"]:
                self.stdout.write(f"  {r['process']}  {r['route']}  host={r['host']} tenant={r['tenant_id']} "
                                  f"user={r['user_id']} from={r['remote_addr']}")
