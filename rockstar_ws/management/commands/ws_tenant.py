"""``python manage.py ws_tenant``: list, create, activate and deactivate tenants.

Changes go through the models' methods, so every server process sharing the channel layer hears
of them at once: caches are cleared and a deactivated tenant's open connections close with 4403.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from rockstar_ws.core.routing import normalize_host
from rockstar_ws.tenants.models import Tenant, TenantHost, clean_host


class Command(BaseCommand):
    help = ("Manage rockstar_ws tenants: list | create ID [--name N] [--host H ...] | "
            "add-host ID HOST | remove-host HOST | activate ID | deactivate ID")

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Tenants with their hosts and state.")
        create = sub.add_parser("create", help="Create a tenant (or update its name and add hosts).")
        create.add_argument("identifier")
        create.add_argument("--name", default=None)
        create.add_argument("--host", action="append", default=[], dest="hosts")
        create.add_argument("--max-connections", type=int, default=None)
        create.add_argument("--overrides", dest="tenant_settings", default=None,
                            help='Per-tenant overrides as JSON, e.g. \'{"max_message_size": 65536}\'.')
        add = sub.add_parser("add-host", help="Give a tenant one more host.")
        add.add_argument("identifier")
        add.add_argument("host")
        remove = sub.add_parser("remove-host", help="Remove a host from its tenant.")
        remove.add_argument("host")
        for name, text in (("activate", "Accept connections on the tenant's hosts again."),
                           ("deactivate", "Refuse new connections and close open ones (4403), in every process.")):
            p = sub.add_parser(name, help=text)
            p.add_argument("identifier", nargs="+")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            with transaction.atomic():
                getattr(self, "do_" + action.replace("-", "_"))(options)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc

    def _tenant(self, identifier: str) -> Tenant:
        try:
            return Tenant.objects.get(identifier=identifier)
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant {identifier!r} (see: manage.py ws_tenant list)") from None

    def do_list(self, options: dict[str, Any]) -> None:
        for t in Tenant.objects.prefetch_related("hosts"):
            state = "active" if t.is_active else "INACTIVE"
            hosts = ", ".join(h.host for h in t.hosts.all()) or "(no hosts)"
            self.stdout.write(f"{t.identifier}\t{state}\t{hosts}\t{t.name}")

    def do_create(self, options: dict[str, Any]) -> None:
        tenant, created = Tenant.objects.get_or_create(identifier=options["identifier"],
                                                       defaults={"name": options["name"] or ""})
        if not created and options["name"] is not None:
            tenant.name = options["name"]
        if options["max_connections"] is not None:
            tenant.max_connections = options["max_connections"]
        if options["tenant_settings"] is not None:
            try:
                tenant.settings = json.loads(options["tenant_settings"])
            except ValueError as exc:
                raise CommandError(f"--overrides is not valid JSON: {exc}") from exc
        tenant.full_clean()
        tenant.save()
        for host in options["hosts"]:
            self._add_host(tenant, host)
        self.stdout.write(f"{'created' if created else 'updated'} tenant {tenant.identifier}")

    def _add_host(self, tenant: Tenant, host: str) -> None:
        row = TenantHost(tenant=tenant, host=clean_host(host))
        existing = TenantHost.objects.filter(host=row.host).select_related("tenant").first()
        if existing is not None and existing.tenant_id != tenant.pk:
            raise CommandError(f"Host {existing.host!r} already belongs to tenant {existing.tenant.identifier!r}")
        if existing is None:
            row.full_clean(exclude=["tenant"])
            row.save()

    def do_add_host(self, options: dict[str, Any]) -> None:
        self._add_host(self._tenant(options["identifier"]), options["host"])
        self.stdout.write(f"host {options['host']} -> {options['identifier']}")

    def do_remove_host(self, options: dict[str, Any]) -> None:
        deleted, _ = TenantHost.objects.filter(host=normalize_host(options["host"])).delete()
        if not deleted:
            raise CommandError(f"No tenant has host {options['host']!r}")
        self.stdout.write(f"removed host {options['host']}")

    def do_activate(self, options: dict[str, Any]) -> None:
        for ident in options["identifier"]:
            self._tenant(ident).activate()
            self.stdout.write(f"activated {ident}")

    def do_deactivate(self, options: dict[str, Any]) -> None:
        for ident in options["identifier"]:
            self._tenant(ident).deactivate()
            self.stdout.write(f"deactivated {ident}; its open connections are closing")
