"""Tenant changes reaching running servers: caches cleared, an inactive tenant's connections closed.

Three ways: the model signals (this process), a message on the channel-layer group
``TENANT_CONTROL_GROUP`` (every other process), and a periodic sweep re-resolving the hosts of
open connections, for changes no signal reports (``QuerySet.update()``, another database client,
a custom resolver's own data).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..conf import ws_settings
from ..core.backoff import Backoff
from ..core.messages import CloseCode
from ..core.outage import outage
from ..layers import crosses_processes
from .resolver import TenantResolver, invalidate, model_resolver, tenant_servers

if TYPE_CHECKING:
    from ..core.connection import WebSocketConnection

__all__ = ["CONTROL_HANDLERS", "CONTROL_MESSAGE", "TENANT_INACTIVE_CLOSE_CODE", "add_control_handler",
           "connect_signals", "control_listener", "ensure_listening", "sweep", "tenants_changed"]

logger = logging.getLogger("rockstar_ws.tenants")

#: Close code of an open connection whose tenant was deactivated or deleted, or whose host moved to
#: another tenant (4000 + 403, the code ``REFUSAL_MODE = "close"`` uses for a refused handshake:
#: "not allowed, do not retry").
TENANT_INACTIVE_CLOSE_CODE = CloseCode.FORBIDDEN

#: channel-layer message type of the control broadcast
CONTROL_MESSAGE = "rockstar.tenants.changed"


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
    return [c for s in list(tenant_servers) for c in s.connections if c.ctx.request.tenant_id is not None]


async def _close_tenants(identifiers: Iterable[str]) -> int:
    wanted = set(identifiers)
    closing = [c for c in _tenant_connections() if c.ctx.request.tenant_id in wanted]
    for conn in closing:
        await conn.close(TENANT_INACTIVE_CLOSE_CODE, "tenant inactive")
    if closing:
        logger.info("closed %d connection(s) of inactive tenant(s) %s", len(closing), sorted(wanted))
    return len(closing)


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
        if float(ws_settings.TENANT_POLL_INTERVAL) > 0 and not crosses_processes(layer):
            # No broadcast reaches this process from another one (the management command, a
            # second web process): a cheap version read stands in for it.
            self.tasks.append(loop.create_task(self._poll_forever()))

    async def _listen(self, layer: Any) -> None:
        group = ws_settings.TENANT_CONTROL_GROUP
        channel = await layer.new_channel()
        rejoin = asyncio.Event()
        refresher = asyncio.ensure_future(self._stay_in_group(layer, group, channel, rejoin))
        backoff = Backoff()
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
                    await backoff.sleep()
                    continue
                backoff.reset()
                if message.get("type") == CONTROL_MESSAGE:
                    await self.handle(message)
                elif message.get("type") in CONTROL_HANDLERS:  # other commands (rockstar_ws.users)
                    await CONTROL_HANDLERS[message["type"]](message)
        finally:
            refresher.cancel()

    async def _stay_in_group(self, layer: Any, group: str, channel: str, rejoin: asyncio.Event) -> None:
        # channels-redis forgets group members after group_expiry (a day by default): re-add hourly,
        # and at once after the receive loop failed (Redis restarted empty).
        backoff = Backoff()
        while True:
            try:
                await layer.group_add(group, channel)
            except Exception as exc:
                outage.failed("channel layer", f"joining the tenant control group {group!r}", exc, holds=False,
                              log=logger)
                await backoff.sleep()
                continue
            backoff.reset()
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
            if any(getattr(s.tenant_resolver, "func", None) is model_resolver for s in list(tenant_servers)):
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

#: Handlers of other message types on the control group, by type: one listener per process
#: serves every feature that sends commands to all processes (rockstar_ws.users' per-user ones).
CONTROL_HANDLERS: dict[str, Callable[[Mapping[str, Any]], Awaitable[None]]] = {}


def add_control_handler(message_type: str, handler: Callable[[Mapping[str, Any]], Awaitable[None]]) -> None:
    """Have this process's control listener pass messages of ``message_type`` to ``handler``."""
    CONTROL_HANDLERS[message_type] = handler


def control_listener() -> _Control:
    """This process's control listener (started on the running loop if it is not yet):
    ``.joined`` is set once it listens on the control group."""
    ensure_listening()
    return _control


def ensure_listening() -> None:
    """Start this process's listener on the control group (and the sweep) on the running loop."""
    if _control.loop is not asyncio.get_running_loop():
        _control.start()


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
    by_host: dict[tuple[int, str], tuple[TenantResolver, list[WebSocketConnection]]] = {}
    for server in list(tenant_servers):
        resolver = server.tenant_resolver
        if not isinstance(resolver, TenantResolver):
            continue
        for conn in server.connections:
            if conn.ctx.tenant is None or conn.ctx.request.tenant_id is None or conn.closed:
                continue
            by_host.setdefault((id(resolver), conn.ctx.request.host), (resolver, []))[1].append(conn)
    closed = 0
    for resolver, conns in by_host.values():
        info = await resolver.lookup(conns[0].ctx.request.host, fresh=True)
        for conn in conns:
            if info is not None and info.is_active and info.identifier == conn.ctx.tenant.identifier:
                continue
            reason = "tenant inactive" if info is None or not info.is_active else "tenant changed"
            await conn.close(TENANT_INACTIVE_CLOSE_CODE, reason)
            closed += 1
    if closed:
        logger.info("tenant sweep closed %d connection(s)", closed)
    return closed


def connect_signals() -> None:
    """Invalidate and broadcast when our tenant models change (called from AppConfig.ready)."""
    from django.db import transaction
    from django.db.models.signals import post_delete, post_save

    from .models import Tenant, TenantHost
    from .signals import tenants_bulk_changed

    def bulk_changed(sender: Any, identifiers: list[str], close: bool, **kwargs: Any) -> None:
        tenants_changed(identifiers, close=close)

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

    tenants_bulk_changed.connect(bulk_changed, dispatch_uid="rockstar_ws.tenants_bulk_changed")
    post_save.connect(tenant_saved, sender=Tenant, dispatch_uid="rockstar_ws.tenant_saved")
    post_delete.connect(tenant_deleted, sender=Tenant, dispatch_uid="rockstar_ws.tenant_deleted")
    post_save.connect(host_changed, sender=TenantHost, dispatch_uid="rockstar_ws.tenant_host_saved")
    post_delete.connect(host_changed, sender=TenantHost, dispatch_uid="rockstar_ws.tenant_host_deleted")
