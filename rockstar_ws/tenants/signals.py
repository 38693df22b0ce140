"""The signal our tenant models send for bulk changes, which no ``post_save`` reports."""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["tenants_bulk_changed"]

#: Sent once a bulk update of tenants is committed (``TenantQuerySet.activate()``/``deactivate()``)
#: with ``identifiers`` (list of str) and ``close`` (True: their connections must close).
#: rockstar_ws.tenants.propagation receives it; the models never import the code that reacts.
tenants_bulk_changed = Signal()
