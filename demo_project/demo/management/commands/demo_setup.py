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
