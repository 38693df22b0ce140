"""Host -> tenant: the default resolver (our models), the per-process cache in front of any
resolver (:class:`TenantResolver`), and turning tenancy on for a server (:func:`install`)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..conf import ws_settings
from ..core.errors import Deny, ImproperlyConfigured
from .info import TenantInfo

if TYPE_CHECKING:
    from ..core.context import Request
    from ..engine.server import WebSocketServer

__all__ = ["TenantResolver", "get_resolver", "install", "invalidate", "model_resolver", "tenant_servers"]

logger = logging.getLogger("rockstar_ws.tenants")


def model_resolver(host: str) -> TenantInfo | None:
    """The default resolver: our ``TenantHost`` / ``Tenant`` models (one indexed query)."""
    from django.db import DatabaseError, connections, router

    from .models import TenantHost

    try:
        row = TenantHost.objects.select_related("tenant").filter(host=host).first()
    except DatabaseError:
        # Not migrated yet: no tenant can exist, so no host has one. Any other database error
        # refuses the handshake (500): a tenant host must never pass as tenant-less.
        alias = router.db_for_read(TenantHost)
        if TenantHost._meta.db_table in connections[alias].introspection.table_names():
            raise
        if not _warned_unmigrated:
            _warned_unmigrated.append(True)
            logger.warning("rockstar_ws tenant tables are missing (run 'manage.py migrate'); no host has a tenant")
        return None
    if row is None:
        return None
    t = row.tenant
    return TenantInfo(identifier=t.identifier, name=t.name, is_active=t.is_active,
                      max_connections=t.max_connections, settings=t.settings or {}, pk=t.pk)


_warned_unmigrated: list[bool] = []
_resolvers: weakref.WeakSet[TenantResolver] = weakref.WeakSet()
#: Servers with tenancy on (:func:`install`): the ones whose connections tenant changes reach.
tenant_servers: weakref.WeakSet[WebSocketServer] = weakref.WeakSet()
#: identifier -> (monotonic expiry, inactive?) for binding.check_token_tenant_active; cleared with the host cache.
inactive_cache: dict[str, tuple[float, bool]] = {}


class TenantResolver:
    """``server.tenant_resolver``: host -> tenant through a short-lived per-process cache.

    ``func(host) -> TenantInfo | str | None`` may be a plain function (run in a worker thread
    with ``database_sync_to_async``, so the ORM never blocks the event loop) or ``async def``.
    It receives the normalized host (lower-case, no port) and must return inactive tenants as
    ``TenantInfo(is_active=False)`` rather than None, so their hosts are refused instead of
    falling through to the global routes. Results, misses included, are cached for ``ttl``
    seconds; concurrent handshakes for one uncached host share one call.
    """

    def __init__(self, func: Callable[[str], Any], *, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        if not callable(func):
            raise ImproperlyConfigured(f"Tenant resolver {func!r} is not callable")
        self.func = func
        self.ttl = ttl
        self.max_entries = max_entries
        self._async = inspect.iscoroutinefunction(func)
        self._cache: OrderedDict[str, tuple[float, TenantInfo | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[TenantInfo | None]] = {}
        self._generation = 0
        self.calls = 0  # resolver calls (cache misses), for tests and metrics
        _resolvers.add(self)

    async def __call__(self, request: Request) -> TenantInfo | None:
        """Resolve ``request.host``; set ``request.tenant_id``; refuse an inactive tenant (403)."""
        info = await self.lookup(request.host)
        if info is None:
            return None
        if not info.is_active:
            raise Deny(403, "tenant inactive", log_detail=f"tenant {info.identifier!r} is inactive")
        request.tenant_id = info.identifier
        return info

    async def lookup(self, host: str, *, fresh: bool = False) -> TenantInfo | None:
        """The tenant of ``host`` (inactive ones included), from the cache unless ``fresh``."""
        if fresh:
            return await self._resolve(host, shared=False)
        hit = self._cache.get(host)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        task = self._inflight.get(host)
        if task is None:
            # One task per uncached host, shared by every handshake waiting for it; shielded, so a
            # client that leaves mid-lookup cancels only its own wait.
            task = asyncio.ensure_future(self._resolve(host, shared=True))
            task.add_done_callback(_retrieve)
            self._inflight[host] = task
        return await asyncio.shield(task)

    async def _resolve(self, host: str, *, shared: bool) -> TenantInfo | None:
        generation = self._generation
        try:
            info = await self._call(host)
        finally:
            if shared:
                self._inflight.pop(host, None)
        if generation == self._generation and self.ttl > 0:
            self._store(host, info)
        return info

    async def _call(self, host: str) -> TenantInfo | None:
        self.calls += 1
        if self._async:
            value = await self.func(host)
        else:
            from channels.db import database_sync_to_async

            value = await database_sync_to_async(self.func)(host)
        return TenantInfo.coerce(value, f"tenant resolver {getattr(self.func, '__qualname__', self.func)!r}")

    def _store(self, host: str, info: TenantInfo | None) -> None:
        self._cache[host] = (time.monotonic() + self.ttl, info)
        self._cache.move_to_end(host)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def invalidate(self) -> None:
        """Forget every cached host (safe from any thread; lookups in flight are not stored)."""
        self._generation += 1
        self._cache.clear()


def _retrieve(task: asyncio.Future[Any]) -> None:
    # A lookup whose waiters all left must not log "exception never retrieved"; waiters still see it.
    if not task.cancelled():
        task.exception()


def get_resolver() -> TenantResolver | None:
    """A :class:`TenantResolver` for ``ROCKSTAR_WS["TENANT_RESOLVER"]`` (None when tenancy is off)."""
    name = ws_settings.TENANT_RESOLVER
    if name is None:
        return None
    func = name
    if not callable(func):
        raise ImproperlyConfigured(f"ROCKSTAR_WS['TENANT_RESOLVER'] must name a function, got {func!r}")
    return TenantResolver(func, ttl=float(ws_settings.TENANT_CACHE_TTL),
                          max_entries=int(ws_settings.TENANT_CACHE_SIZE))


def install(server: WebSocketServer, resolver: TenantResolver | Callable[[str], Any] | None = None) -> None:
    """Turn tenancy on for ``server`` (the default server gets it at start-up from settings).

    ``resolver`` may be a :class:`TenantResolver` or a plain ``func(host)``; None reads
    ``TENANT_RESOLVER`` (and leaves tenancy off when that is None).
    """
    if resolver is None:
        resolver = get_resolver()
    elif not isinstance(resolver, TenantResolver):
        resolver = TenantResolver(resolver, ttl=float(ws_settings.TENANT_CACHE_TTL),
                                  max_entries=int(ws_settings.TENANT_CACHE_SIZE))
    server.tenant_resolver = resolver
    if resolver is None:
        tenant_servers.discard(server)
        return
    tenant_servers.add(server)


def invalidate() -> None:
    """Clear the host->tenant cache of every resolver in this process."""
    for resolver in list(_resolvers):
        resolver.invalidate()
    inactive_cache.clear()
