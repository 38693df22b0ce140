"""``python manage.py demo_setup``: create the demo's users and tenants (idempotent)."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERS = [
    # username, password, is_staff
    ("alice", "alice-password", False),
    ("bob", "bob-password", False),
    ("admin", "admin-password", True),
]


DEMO_TENANTS = [
    # identifier, name, hosts
    ("tenant1", "Tenant One", ["tenant1.localhost"]),
    ("tenant2", "Tenant Two", ["tenant2.localhost"]),
]



def setup_tenants(stdout: Any = None) -> None:
    """Create the demo tenants and their hosts, active (again), with no overrides."""
    from rockstar_ws.tenants.models import Tenant, TenantHost

    for identifier, name, hosts in DEMO_TENANTS:
        tenant, created = Tenant.objects.get_or_create(identifier=identifier, defaults={"name": name})
        if not created and (not tenant.is_active or tenant.name != name):
            tenant.name = name
            tenant.is_active = True
            tenant.save()
        for host in hosts:
            TenantHost.objects.update_or_create(host=host, defaults={"tenant": tenant})
        if stdout is not None:
            stdout.write(f"{'created' if created else 'updated'} tenant {identifier} ({', '.join(hosts)})")


DEMO_GRANTS = [
    # username, scopes (space-separated), tenant: what /api/token/ puts into their tokens
    ("alice", "chat:read chat:write", "tenant1"),
    ("bob", "chat:read", "tenant2"),
    # the staff user may open tenant1's /ws/admin (the reference's RegisterAuthenticatedHostRoute example)
    ("admin", "admin:access", "tenant1"),
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
    help = "Create the demo users alice, bob and admin (staff) and the tenants tenant1, tenant2. Safe to run again."

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
        setup_tenants(self.stdout)
        setup_grants(self.stdout)
