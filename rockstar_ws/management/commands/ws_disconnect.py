"""``python manage.py ws_disconnect --user NAME [--code 4403] [--reason TEXT] [--route R] [--tenant T]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rockstar_ws.engine.server import default_server
from rockstar_ws.management.commands._users import add_user_arguments, require_cross_process_layer, user_id_from
from rockstar_ws.users import USER_INACTIVE_CLOSE_CODE


class Command(BaseCommand):
    help = ("Close every open connection of a user, in every server process, through the channel layer "
            "(needs channels-redis; see docs/users.md for what clients do with each code).")

    def add_arguments(self, parser: CommandParser) -> None:
        add_user_arguments(parser)
        parser.add_argument("--code", type=int, default=USER_INACTIVE_CLOSE_CODE,
                            help="close code: 1000 or 3000-4999 (default 4403: the client does not reconnect)")
        parser.add_argument("--reason", default="", help="close reason (at most 123 UTF-8 bytes)")

    def handle(self, *args: Any, **options: Any) -> None:
        require_cross_process_layer()
        uid, who = user_id_from(options)
        try:
            default_server.disconnect_user_sync(uid, options["code"], options["reason"], route=options["route"],
                                                tenant=options["tenant"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"closing the connections of {who} in every server process with {options['code']}")
