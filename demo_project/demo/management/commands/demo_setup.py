"""``python manage.py demo_setup``: create the demo's users (idempotent)."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERS = [
    # username, password, is_staff
    ("alice", "alice-password", False),
    ("bob", "bob-password", False),
    ("admin", "admin-password", True),
]


DEMO_GRANTS = [
    # username, scopes (space-separated), tenant: what /api/token/ puts into their tokens
    ("alice", "chat:read chat:write", "tenant1"),
    ("bob", "chat:read", "tenant2"),
]


def setup_grants(stdout: Any) -> None:
    """Give the demo users their token scopes and tenants (demo.DemoGrant)."""
    from demo_project.demo.models import DemoGrant

    User = get_user_model()
    for username, scopes, tenant in DEMO_GRANTS:
        user = User.objects.get(username=username)
        DemoGrant.objects.update_or_create(user=user, defaults={"scopes": scopes, "tenant": tenant})
        stdout.write(f"granted {username}: scopes {scopes!r}, tenant {tenant!r}")


class Command(BaseCommand):
    help = "Create the demo users alice, bob and admin (staff). Safe to run again."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        for username, password, staff in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            user.is_staff = staff
            user.is_superuser = staff
            user.is_active = True
            user.set_password(password)
            user.save()
            self.stdout.write(f"{'created' if created else 'updated'} user {username} (id {user.pk})")
        setup_grants(self.stdout)
