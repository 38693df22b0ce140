"""``python manage.py ws_send --user NAME DATA [--binary] [--route R] [--tenant T]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from rockstar_ws.core.messages import BinaryMessage, TextMessage
from rockstar_ws.engine.server import default_server
from rockstar_ws.management.commands._users import add_user_arguments, require_cross_process_layer, user_id_from


class Command(BaseCommand):
    help = ("Send one message to every open connection of a user, in every server process, through the channel "
            "layer (needs channels-redis; see docs/users.md).")

    def add_arguments(self, parser: CommandParser) -> None:
        add_user_arguments(parser)
        parser.add_argument("data", help="the message text (UTF-8; with --binary sent as a binary message)")
        parser.add_argument("--binary", action="store_true", help="send a binary message instead of text")

    def handle(self, *args: Any, **options: Any) -> None:
        require_cross_process_layer()
        uid, who = user_id_from(options)
        kind = BinaryMessage if options["binary"] else TextMessage
        default_server.send_to_user_sync(uid, kind, options["data"], route=options["route"], tenant=options["tenant"])
        self.stdout.write(f"sent to the connections of {who} in every server process")
