"""Multi-tenancy: a handshake's host resolves to a tenant, and tokens are bound to their tenant.

How a handshake goes (docs/tenants.md has the table):

1. ``server.resolve_tenant(request)`` (the consumer calls it before route lookup) runs the
   :class:`TenantResolver`: a per-process cache in front of the resolver named by
   ``ROCKSTAR_WS["TENANT_RESOLVER"]`` (default :func:`model_resolver`, our ``Tenant`` model).
   A host of an inactive tenant is refused with 403; a host of an active tenant sets
   ``request.tenant_id``; ``ctx.tenant`` becomes the :class:`TenantInfo`.
2. The route is looked up with the tenant (host routes, then routes declared for the tenant,
   then global ones).
3. ``server.handshake()`` applies the tenant's setting overrides to the upgrader
   (:func:`apply_tenant_settings`) and, on authenticated routes, right after authentication,
   checks that the token belongs to the host's tenant (:func:`check_tenant_binding`, 403).

Changes reach running servers three ways: signals clear this process's cache; a message on the
channel layer group ``TENANT_CONTROL_GROUP`` clears every other process's cache and closes an
inactive tenant's connections (code 4403); and a periodic sweep re-resolves the hosts of open
connections, for changes made where no signal fires (``QuerySet.update()``, another database
client, a custom resolver's own data).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from .conf import ws_settings
from .errors import Deny, ImproperlyConfigured
from .outage import outage

if TYPE_CHECKING:
    from .connection import WebSocketConnection
    from .context import Context, Request
    from .server import WebSocketServer

__all__ = [
    "TENANT_CHANGED_CLOSE_CODE",
    "TENANT_INACTIVE_CLOSE_CODE",
    "TenantInfo",
    "TenantResolver",
    "apply_tenant_settings",
    "check_tenant_binding",
    "get_resolver",
    "install",
    "invalidate",
    "model_resolver",
    "register_tenant_setting",
    "tenants_changed",
    "validate_tenant_settings",
]

logger = logging.getLogger("rockstar_ws.tenants")
#: Backoff of the control channel's retries while the layer fails (the same cap as the group hub's).
_RETRY_MIN, _RETRY_MAX = 0.2, 2.0

#: Close code of an open connection whose tenant was deactivated or deleted (4000 + 403, the
#: same number ``REFUSAL_MODE = "close"`` uses for a refused handshake: "not allowed, do not retry").
TENANT_INACTIVE_CLOSE_CODE = 4403
#: The same code, used when the connection's host no longer belongs to its tenant.
TENANT_CHANGED_CLOSE_CODE = 4403

#: channel-layer message type of the control broadcast
CONTROL_MESSAGE = "rockstar.tenants.changed"


# -- what a resolver returns ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TenantInfo:
    """What rockstar_ws knows about a connection's tenant: ``ctx.tenant``.

    ``identifier`` is what ``ctx.request.tenant_id`` and a token's tenant claim hold.
    ``settings`` are the per-tenant overrides (validated, read-only). ``pk`` is the primary key
    of our ``Tenant`` row (``await Tenant.objects.aget(pk=ctx.tenant.pk)`` for the model);
    ``obj`` is whatever a custom resolver wants handlers to have (e.g. a django-tenants tenant).
    """

    identifier: str
    name: str = ""
    is_active: bool = True
    max_connections: int | None = None
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    pk: Any = None
    obj: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.identifier, str) or not self.identifier:
            raise TypeError(f"TenantInfo.identifier must be a non-empty str, not {self.identifier!r}")
        if not isinstance(self.settings, MappingProxyType):
            object.__setattr__(self, "settings", MappingProxyType(dict(self.settings or {})))

    @classmethod
    def coerce(cls, value: Any, where: str = "tenant resolver") -> TenantInfo | None:
        """None, a TenantInfo, or an identifier string (an active tenant) -> TenantInfo or None."""
        if value is None or isinstance(value, TenantInfo):
            return value
        if isinstance(value, str):
            return cls(identifier=value) if value else None
        raise TypeError(f"{where} returned {type(value).__name__}; return None, an identifier str "
                        f"or rockstar_ws.tenants.TenantInfo")


# -- per-tenant settings overrides ----------------------------------------------------------
_SettingValidator = Callable[[Any], Any]
_TENANT_SETTINGS: dict[str, tuple[_SettingValidator, str]] = {}
#: Overrides that become fields of the tenant's upgrader.
_UPGRADER_KEYS = {"max_message_size", "allowed_origins", "allow_missing_origin"}


def register_tenant_setting(name: str, validator: _SettingValidator, doc: str) -> None:
    """Declare a key a tenant's ``settings`` may override. ``validator(value)`` returns the
    cleaned value or raises ``ValueError``/``TypeError`` with a message for the admin form."""
    _TENANT_SETTINGS[name] = (validator, doc)


def tenant_setting_docs() -> dict[str, str]:
    """Known override keys and their documentation."""
    return {k: v[1] for k, v in sorted(_TENANT_SETTINGS.items())}


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number >= 0, got {value!r}")
    return value


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be a list of non-empty strings, got {value!r}")
    return list(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


register_tenant_setting("max_message_size", _non_negative_int,
                        "Bytes; a larger message closes the connection with 1009 (0: no limit).")
register_tenant_setting("allowed_origins", _str_list,
                        "Origins (host patterns or full origins) allowed besides the connection's own host.")
register_tenant_setting("allow_missing_origin", _bool,
                        "Admit handshakes without an Origin header (non-browser clients).")


def validate_tenant_settings(value: Any) -> dict[str, Any]:
    """Check a tenant's overrides: a dict of known keys with valid values.

    Raises :class:`django.core.exceptions.ValidationError` naming every bad key (unknown keys are
    listed with the known ones, so a typo is never silently ignored).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"Tenant settings must be a JSON object, got {type(value).__name__}.")
    errors: list[str] = []
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        entry = _TENANT_SETTINGS.get(key)
        if entry is None:
            errors.append(f"Unknown tenant setting {key!r}; known: {', '.join(sorted(_TENANT_SETTINGS))}.")
            continue
        try:
            cleaned[key] = entry[0](item)
        except (TypeError, ValueError) as exc:
            errors.append(f"{key}: {exc}")
    if errors:
        raise ValidationError(errors)
    return cleaned


# -- resolvers ------------------------------------------------------------------------------
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
_servers: weakref.WeakSet[WebSocketServer] = weakref.WeakSet()


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
        if _control.loop is not asyncio.get_running_loop():
            _control.start()
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
    if isinstance(name, str):
        try:
            func = import_string(name)
        except ImportError as exc:
            raise ImproperlyConfigured(f"ROCKSTAR_WS['TENANT_RESOLVER']: cannot import {name!r}: {exc}") from exc
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
        _servers.discard(server)
        return
    _servers.add(server)


def invalidate() -> None:
    """Clear the host->tenant cache of every resolver in this process."""
    for resolver in list(_resolvers):
        resolver.invalidate()
    _inactive_cache.clear()


#: identifier -> (monotonic expiry, inactive?) for check_token_tenant_active.
_inactive_cache: dict[str, tuple[float, bool]] = {}


def _tenant_inactive(identifier: str) -> bool:
    from .models import Tenant

    return Tenant.objects.filter(identifier=identifier, is_active=False).exists()


async def check_token_tenant_active(ctx: Context) -> None:
    """On a host of no tenant, a token of a tenant that our model knows as inactive is refused (403).

    Applies with the default model resolver only (a custom resolver's tenants need not be in our
    model). Answers are cached for ``TENANT_CACHE_TTL`` and cleared with the host cache.
    """
    identifier = ctx.request.tenant_id
    resolver = ctx.server.tenant_resolver
    if ctx.tenant is not None or not identifier or getattr(resolver, "func", None) is not model_resolver:
        return
    now = time.monotonic()
    cached = _inactive_cache.get(identifier)
    if cached is not None and cached[0] > now:
        inactive = cached[1]
    else:
        from channels.db import database_sync_to_async

        inactive = await database_sync_to_async(_tenant_inactive)(identifier)
        if len(_inactive_cache) > 10_000:
            _inactive_cache.clear()
        _inactive_cache[identifier] = (now + float(ws_settings.TENANT_CACHE_TTL), inactive)
    if inactive:
        raise Deny(403, "tenant inactive", log_detail=f"token tenant {identifier!r} is inactive")


# -- handshake steps (called by server.handshake) ----------------------------------------------
def apply_tenant_settings(ctx: Context) -> None:
    """Give the handshake the tenant's upgrader overrides (origins, message size).

    They replace fields of ``ctx.upgrader`` (the route's limits over the server's and the
    settings'), which the origin check and the message-size limit read.
    """
    tenant: TenantInfo | None = ctx.tenant
    if tenant is None or not tenant.settings:
        return
    changes = {k: v for k, v in tenant.settings.items() if k in _UPGRADER_KEYS}
    if changes:
        ctx.upgrader = ctx.upgrader.replace(**changes)


def check_tenant_binding(ctx: Context) -> None:
    """An authenticated route reached through a tenant's host admits only that tenant's tokens.

    The token's tenant claim (``TENANT_TOKEN_CLAIM``, in ``ctx.request.claims``) must equal the
    host's tenant; a token without one is refused too (403). A route opts out with the option
    ``cross_tenant_scopes=[...]``: a token holding one of those scopes may open it on any tenant.
    The host's tenant stays ``ctx.request.tenant_id``.
    """
    tenant: TenantInfo | None = ctx.tenant
    if tenant is None:
        return
    request = ctx.request
    claim = (request.claims or {}).get(ws_settings.TENANT_TOKEN_CLAIM)
    if claim is None or str(claim) != tenant.identifier:
        cross = ctx.route.options.get("cross_tenant_scopes") or ()
        if isinstance(cross, str):  # a bare string would match single characters: fail closed
            raise ImproperlyConfigured(f"cross_tenant_scopes of {ctx.route.label} must be a list of scopes")
        if not (cross and request.scopes and not request.scopes.isdisjoint(cross)):
            detail = f"host tenant {tenant.identifier!r}, token tenant {claim!r}, user {request.user_id!r}"
            raise Deny(403, "token not valid for this tenant", log_detail=detail)
    request.tenant_id = tenant.identifier


# -- changes reaching running servers -------------------------------------------------------
def tenants_changed(identifiers: Iterable[str], *, close: bool = False) -> None:
    """Tell every server process that these tenants changed: their caches are cleared and, with
    ``close=True`` (deactivated or deleted), their open connections close with 4403.

    Called by the model signals and :class:`TenantQuerySet`; call it yourself after changing
    the data a custom resolver reads. Safe from sync code and from inside an event loop.
    """
    identifiers = sorted({str(i) for i in identifiers})
    invalidate()
    message = {"type": CONTROL_MESSAGE, "identifiers": identifiers, "close": close}
    layer = _layer()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if layer is None:
        # No layer: only this process can be told; close its connections directly.
        if close and loop is not None:
            _keep(loop.create_task(_close_tenants(identifiers)))
        elif close and _control.loop is not None and not _control.loop.is_closed():
            asyncio.run_coroutine_threadsafe(_close_tenants(identifiers), _control.loop)
        return
    group = ws_settings.TENANT_CONTROL_GROUP
    if loop is not None:
        _keep(loop.create_task(_group_send(layer, group, message)))
    else:
        from asgiref.sync import async_to_sync

        try:
            async_to_sync(_group_send)(layer, group, message)
        except Exception:
            logger.exception("could not broadcast the change of tenants %s", identifiers)


async def _group_send(layer: Any, group: str, message: dict[str, Any]) -> None:
    try:
        await layer.group_send(group, message)
    except Exception:
        logger.exception("could not broadcast the change of tenants %s", message.get("identifiers"))


_tasks: set[asyncio.Task[Any]] = set()


def _keep(task: asyncio.Task[Any]) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _layer() -> Any:
    from channels.layers import get_channel_layer

    try:
        return get_channel_layer(ws_settings.CHANNEL_LAYER)
    except Exception:  # a misconfigured layer must not break saving a tenant
        logger.exception("channel layer %r unavailable for tenant broadcasts", ws_settings.CHANNEL_LAYER)
        return None


def _tenant_connections() -> list[WebSocketConnection]:
    return [c for s in list(_servers) for c in s.connections if c.ctx.request.tenant_id is not None]


async def _close_tenants(identifiers: Iterable[str]) -> int:
    wanted = set(identifiers)
    closing = [c for c in _tenant_connections() if c.ctx.request.tenant_id in wanted]
    for conn in closing:
        await _close(conn, TENANT_INACTIVE_CLOSE_CODE, "tenant inactive")
    if closing:
        logger.info("closed %d connection(s) of inactive tenant(s) %s", len(closing), sorted(wanted))
    return len(closing)


async def _close(conn: WebSocketConnection, code: int, reason: str) -> None:
    try:
        await conn.close(code, reason)
    except Exception:  # the client is gone already
        logger.debug("closing %s failed", conn, exc_info=True)


class _Control:
    """Per-process listener on the control group, and the periodic sweep."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        #: Set once this process listens on the control group.
        self.joined = asyncio.Event()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.tasks = []
        self.joined = asyncio.Event()
        layer = _layer()
        if layer is not None:
            self.tasks.append(loop.create_task(self._listen(layer)))
        if float(ws_settings.TENANT_SWEEP_INTERVAL) > 0:
            self.tasks.append(loop.create_task(self._sweep_forever()))
        from .groups import _crosses_processes

        if float(ws_settings.TENANT_POLL_INTERVAL) > 0 and not _crosses_processes(layer):
            # No broadcast reaches this process from another one (the management command, a
            # second web process): a cheap version read stands in for it.
            self.tasks.append(loop.create_task(self._poll_forever()))

    async def _listen(self, layer: Any) -> None:
        group = ws_settings.TENANT_CONTROL_GROUP
        channel = await layer.new_channel()
        rejoin = asyncio.Event()
        refresher = asyncio.ensure_future(self._stay_in_group(layer, group, channel, rejoin))
        delay = _RETRY_MIN
        try:
            while True:
                try:
                    message = await layer.receive(channel)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Counted in the process's one outage report (rockstar_ws.outage), no traceback.
                    outage.failed("channel layer", "receiving tenant changes", exc, holds=False, log=logger)
                    rejoin.set()  # a restarted Redis has forgotten the group
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
                    continue
                delay = _RETRY_MIN
                if message.get("type") == CONTROL_MESSAGE:
                    await self.handle(message)
                elif message.get("type") in CONTROL_HANDLERS:  # hook: other commands (rockstar_ws.users)
                    await CONTROL_HANDLERS[message["type"]](message)
        finally:
            refresher.cancel()

    async def _stay_in_group(self, layer: Any, group: str, channel: str, rejoin: asyncio.Event) -> None:
        # channels-redis forgets group members after group_expiry (a day by default): re-add hourly,
        # and at once after the receive loop failed (Redis restarted empty).
        delay = _RETRY_MIN
        while True:
            try:
                await layer.group_add(group, channel)
            except Exception as exc:
                outage.failed("channel layer", f"joining the tenant control group {group!r}", exc, holds=False,
                              log=logger)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            delay = _RETRY_MIN
            self.joined.set()
            rejoin.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3600):
                    await rejoin.wait()

    async def handle(self, message: Mapping[str, Any]) -> None:
        """Apply a control message: clear the caches, close connections of closed tenants."""
        invalidate()
        if message.get("close"):
            await _close_tenants(message.get("identifiers") or ())

    async def _poll_forever(self) -> None:
        from channels.db import database_sync_to_async

        read = database_sync_to_async(_tenant_tables_version)
        seen: tuple[Any, ...] | None = None
        while True:
            if any(getattr(s.tenant_resolver, "func", None) is model_resolver for s in list(_servers)):
                try:
                    version = await read()
                except Exception:
                    logger.debug("reading the tenant tables' version failed", exc_info=True)
                else:
                    if seen is not None and version != seen:
                        # Something changed somewhere: forget every answer and re-check open
                        # connections now (sweep() closes those of inactive or removed tenants).
                        invalidate()
                        await sweep()
                    seen = version
            await asyncio.sleep(float(ws_settings.TENANT_POLL_INTERVAL))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(float(ws_settings.TENANT_SWEEP_INTERVAL))
            try:
                await sweep()
            except Exception:
                logger.exception("tenant sweep failed")


_control = _Control()

#: Handlers of other message types on the control group, by type (hook: rockstar_ws.users
#: registers its per-user commands here, so one listener per process serves both).
CONTROL_HANDLERS: dict[str, Callable[[Mapping[str, Any]], Awaitable[None]]] = {}


def _tenant_tables_version() -> tuple[Any, ...]:
    """A stamp that changes with every tenant or host row written (two aggregate queries on
    small tables). ``Tenant.updated`` is ``auto_now`` and ``TenantQuerySet.deactivate()`` sets it."""
    from django.db.models import Count, Max

    from .models import Tenant, TenantHost

    tenants = Tenant.objects.aggregate(n=Count("pk"), last=Max("updated"))
    hosts = TenantHost.objects.aggregate(n=Count("pk"), last=Max("pk"))
    return tenants["n"], tenants["last"], hosts["n"], hosts["last"]


async def sweep() -> int:
    """Re-resolve the hosts of open tenant connections (bypassing the cache) and close those whose
    tenant is now inactive or gone, or whose host now belongs elsewhere. Returns how many closed."""
    by_host: dict[tuple[int, str], list[WebSocketConnection]] = {}
    for conn in _tenant_connections():
        tenant = conn.ctx.tenant
        resolver = conn.ctx.server.tenant_resolver
        if tenant is None or not isinstance(resolver, TenantResolver) or conn.closed:
            continue
        by_host.setdefault((id(resolver), conn.ctx.request.host), []).append(conn)
    closed = 0
    for conns in by_host.values():
        resolver = conns[0].ctx.server.tenant_resolver
        info = await resolver.lookup(conns[0].ctx.request.host, fresh=True)
        for conn in conns:
            if info is not None and info.is_active and info.identifier == conn.ctx.tenant.identifier:
                continue
            reason = "tenant inactive" if info is None or not info.is_active else "tenant changed"
            await _close(conn, TENANT_INACTIVE_CLOSE_CODE, reason)
            closed += 1
    if closed:
        logger.info("tenant sweep closed %d connection(s)", closed)
    return closed


# -- model signals ------------------------------------------------------------------------------
def connect_signals() -> None:
    """Invalidate and broadcast when our tenant models change (called from AppConfig.ready)."""
    from django.db import transaction
    from django.db.models.signals import post_delete, post_save

    from .models import Tenant, TenantHost

    def tenant_saved(sender: Any, instance: Tenant, **kwargs: Any) -> None:
        ident, close = instance.identifier, not instance.is_active
        transaction.on_commit(lambda: tenants_changed([ident], close=close), using=kwargs.get("using"))

    def tenant_deleted(sender: Any, instance: Tenant, **kwargs: Any) -> None:
        ident = instance.identifier
        transaction.on_commit(lambda: tenants_changed([ident], close=True), using=kwargs.get("using"))

    def host_changed(sender: Any, instance: TenantHost, **kwargs: Any) -> None:
        try:
            ident = instance.tenant.identifier
        except Exception:  # the tenant is being deleted in the same cascade
            ident = ""
        transaction.on_commit(lambda: tenants_changed([ident] if ident else [], close=False),
                              using=kwargs.get("using"))

    post_save.connect(tenant_saved, sender=Tenant, dispatch_uid="rockstar_ws.tenant_saved")
    post_delete.connect(tenant_deleted, sender=Tenant, dispatch_uid="rockstar_ws.tenant_deleted")
    post_save.connect(host_changed, sender=TenantHost, dispatch_uid="rockstar_ws.tenant_host_saved")
    post_delete.connect(host_changed, sender=TenantHost, dispatch_uid="rockstar_ws.tenant_host_deleted")



# -- system checks --------------------------------------------------------------------------------
def _check_tenancy(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The resolver imports, the numbers make sense, route options are well formed."""
    from django.core.checks import Error, Warning

    from .server import default_server

    errors: list[Any] = []
    try:
        resolver = get_resolver()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="rockstar_ws.E041",
                      hint="Name a function func(host) -> TenantInfo | str | None, or None to turn tenancy off.")]
    for key in ("TENANT_CACHE_TTL", "TENANT_SWEEP_INTERVAL"):
        value = getattr(ws_settings, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            errors.append(Error(f"ROCKSTAR_WS[{key!r}] must be a number of seconds >= 0, got {value!r}",
                                id="rockstar_ws.E042"))
    for route in default_server.routes:
        cross = route.options.get("cross_tenant_scopes")
        if cross is not None and (isinstance(cross, str) or not all(isinstance(s, str) for s in cross)):
            errors.append(Error(f"Route {route.label}: cross_tenant_scopes must be a list of scope strings, "
                                f"got {cross!r}", id="rockstar_ws.E043"))
        if route.tenant and resolver is None:
            errors.append(Warning(f"Route {route.label} is declared for tenant {route.tenant!r} but tenancy is "
                                  "off (TENANT_RESOLVER is None): it can never be reached.", id="rockstar_ws.W041"))
    return errors


def _register_checks() -> None:
    from django.core.checks import register

    register(_check_tenancy, "rockstar_ws")


_register_checks()
