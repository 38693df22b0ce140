"""``python manage.py ws_token <username> [--scope S ...] [--tenant T] [--lifetime SECONDS]``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from rockstar_ws.auth.tokens import access_token_for


class Command(BaseCommand):
    help = ("Print a SimpleJWT access token for an existing user, for WebSocket clients in scripts and "
            "tests. Scopes go into the 'scope' claim, the tenant into 'tenant_id' (see docs/auth.md).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user's USERNAME_FIELD value")
        parser.add_argument("--scope", action="append", default=[], metavar="S",
                            help="a scope to grant (repeat, or give several separated by spaces)")
        parser.add_argument("--tenant", default=None, metavar="T", help="the tenant claim")
        parser.add_argument("--lifetime", type=float, default=None, metavar="SECONDS",
                            help="seconds until the token expires (default: SIMPLE_JWT's ACCESS_TOKEN_LIFETIME)")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(options["username"])
        except User.DoesNotExist:
            raise CommandError(f"no user {options['username']!r}") from None
        if not user.is_active:
            raise CommandError(f"user {options['username']!r} is inactive: rockstar_ws would refuse its token")
        lifetime = options["lifetime"]
        if lifetime is not None and lifetime <= 0:
            raise CommandError("--lifetime must be a positive number of seconds")
        scopes = [s for arg in options["scope"] for s in arg.split()]
        token = access_token_for(user, scopes=scopes or None, tenant=options["tenant"], lifetime=lifetime)
        self.stdout.write(str(token))
