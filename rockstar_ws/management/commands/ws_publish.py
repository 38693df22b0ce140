"""``python manage.py ws_publish GROUP DATA [--tenant T] [--count N]``."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = ("Publish JSON DATA to pub/sub GROUP (of tenant T; none: connections of no tenant) through the "
            "history and the channel layer, so every server process's subscribers get it (docs/pubsub.md).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group", help="the group, as clients name it (e.g. news or room.lobby)")
        parser.add_argument("data", help='a JSON value: \'{"title": "hi"}\', \'"text"\', 42')
        parser.add_argument("--tenant", default=None, metavar="T", help="the tenant whose group it is")
        parser.add_argument("--count", type=int, default=1, metavar="N",
                            help="publish N times (each a publication of its own)")

    def handle(self, *args: Any, **options: Any) -> None:
        from channels.layers import InMemoryChannelLayer

        from rockstar_ws.engine.server import default_server
        from rockstar_ws.pubsub.service import pubsub_for

        try:
            data = json.loads(options["data"])
        except ValueError:
            raise CommandError("DATA must be JSON: quote a text as '\"hello\"', an object as '{\"k\": 1}'") from None
        layer = default_server.channel_layer
        if layer is None or isinstance(layer, InMemoryChannelLayer):
            raise CommandError("ws_publish needs a channel layer that reaches the server processes (channels_redis); "
                               "with the in-memory layer a publication cannot leave this command's process")
        if options["count"] < 1:
            raise CommandError("--count must be at least 1")
        service = pubsub_for(default_server)

        async def run() -> list[Any]:
            out = [await service.publish(options["group"], data, tenant=options["tenant"])
                   for _ in range(options["count"])]
            await service.close()
            return out

        try:
            results = async_to_sync(run)()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        last = results[-1].position
        where = f" offset {last.offset} epoch {last.epoch}" if last is not None else " (no history)"
        self.stdout.write(f"published {len(results)} to {options['group']!r}{where}")
