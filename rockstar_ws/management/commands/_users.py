"""What ws_send and ws_disconnect share: finding the user and checking the layer reaches servers."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser


def add_user_arguments(parser: CommandParser) -> None:
    """``--user NAME`` (or ``--user-id ID``), ``--route`` and ``--tenant``."""
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="NAME", help="the user's USERNAME_FIELD value")
    who.add_argument("--user-id", metavar="ID", help="the user id as tokens carry it (SimpleJWT's USER_ID_FIELD)")
    parser.add_argument("--route", default=None, metavar="ROUTE", help="only connections of this route (path or name)")
    parser.add_argument("--tenant", default=None, metavar="T", help="only connections of this tenant")


def user_id_from(options: dict[str, Any]) -> tuple[str, str]:
    """The user id to address and how to name it in output."""
    if options.get("user_id"):
        return str(options["user_id"]), f"user id {options['user_id']}"
    from rest_framework_simplejwt.settings import api_settings

    User = get_user_model()
    try:
        user = User._default_manager.get_by_natural_key(options["user"])
    except User.DoesNotExist:
        raise CommandError(f"no user {options['user']!r}") from None
    uid = str(getattr(user, api_settings.USER_ID_FIELD))
    return uid, f"user {options['user']} (id {uid})"


def require_cross_process_layer() -> None:
    """A CommandError unless the channel layer reaches the server processes."""
    from channels.layers import get_channel_layer

    from rockstar_ws.conf import ws_settings
    from rockstar_ws.users.delivery import crosses_processes

    layer = get_channel_layer(ws_settings.CHANNEL_LAYER)
    if not crosses_processes(layer):
        name = type(layer).__name__ if layer is not None else "none"
        raise CommandError(f"the channel layer ({name}) does not reach other processes, so this command cannot "
                           "reach the running servers: configure channels-redis (CHANNEL_LAYERS), or call "
                           "default_server.send_to_user_sync() / disconnect_user_sync() inside the server process")
