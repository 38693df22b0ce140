"""The registry of live connections and the connection limits (docs/connections.md).

Every accepted connection is counted once when its handshake is admitted and once when it ends
(the ``admission`` stage of the handshake pipeline); nothing happens per message. A connection is counted under
``total``, its route label, its tenant, its user and its client IP, and is kept as a
:class:`ConnectionRecord`.

* :class:`LocalRegistry` (embedded default): counters in this process, nothing to install.
* :class:`RedisRegistry` (cluster mode, when Redis is configured): the same counters, plus one
  hash of counters and one hash of records per process in Redis. One heartbeat per process
  (``REGISTRY_HEARTBEAT`` seconds) refreshes their expiry (``REGISTRY_TTL``), so a process that
  dies without cleaning up drops out of every count when its keys expire. Admission checks the
  cluster-wide sums and increments in one Lua script, so limits hold across processes.

If Redis fails, connections are still served (fail open): admission falls back to this
process's counts, the failure is logged at ERROR once per outage, and the next heartbeat that
reaches Redis rewrites this process's state there.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import ws_settings
from ..core.errors import Deny
from ..core.outage import outage
from ..core.redis import close_client, loop_task, text, waiting_client

if TYPE_CHECKING:
    from ..core.context import Context
    from ..engine.server import WebSocketServer

__all__ = ["LIMIT_REASONS", "ConnectionRecord", "LocalRegistry", "RedisRegistry",
           "admit", "get_registry", "install", "installed_servers", "reset_registry"]

logger = logging.getLogger("rockstar_ws.registry")

Release = Callable[[], Awaitable[None]]

#: The client-safe reason of each limit's 429 refusal.
LIMIT_REASONS = {
    "process": "too many connections to this server",
    "tenant": "too many connections for this tenant",
    "user": "too many connections for this user",
    "ip": "too many connections from this address",
}
_PREFIX_OF = {"route": "r:", "tenant": "t:", "user": "u:", "ip": "i:"}
_GROUP_OF = {v: k for k, v in _PREFIX_OF.items()}


def process_name() -> str:
    """This process as the registry names it: ``hostname:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class ConnectionRecord:
    """One live connection as the registry keeps it."""

    id: str
    route: str
    host: str
    tenant_id: str | None
    user_id: str | None
    remote_addr: str
    connected_at: float
    process: str

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data (the admin JSON and ws_connections print it)."""
        return asdict(self)


def _user_id(ctx: Context) -> str | None:
    uid = ctx.request.user_id
    if uid is not None:
        return str(uid)
    user = ctx.user
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None


def _fields_and_checks(ctx: Context) -> tuple[list[str], list[tuple[str, str, int]]]:
    """The counter fields of a connection and the limits (kind, field, limit) that apply to it."""
    request = ctx.request
    fields = ["total", "r:" + ctx.route.label]
    checks: list[tuple[str, str, int]] = []
    tenant_id = request.tenant_id
    if tenant_id is not None:
        field = f"t:{tenant_id}"
        fields.append(field)
        limit = getattr(ctx.tenant, "max_connections", None)
        if limit is None:
            limit = ws_settings.MAX_CONNECTIONS_PER_TENANT
        if limit:
            checks.append(("tenant", field, int(limit)))
    user_id = _user_id(ctx)
    if user_id is not None:
        field = f"u:{user_id}"
        fields.append(field)
        if ws_settings.MAX_CONNECTIONS_PER_USER:
            checks.append(("user", field, ws_settings.MAX_CONNECTIONS_PER_USER))
    ip = request.remote_ip
    if ip:
        field = f"i:{ip}"
        fields.append(field)
        if ws_settings.MAX_CONNECTIONS_PER_IP:
            checks.append(("ip", field, ws_settings.MAX_CONNECTIONS_PER_IP))
    return fields, checks


def build_snapshot(mode: str, nodes: list[tuple[str, dict[str, int], list[dict[str, Any]]]],
                   **extra: Any) -> dict[str, Any]:
    """The registry's answer: totals by route, tenant, user, IP and process (plus records if read)."""
    groups: dict[str, Counter[str]] = {g: Counter() for g in _PREFIX_OF}
    by_process: dict[str, int] = {}
    records: list[dict[str, Any]] = []
    for process, counts, recs in nodes:
        by_process[process] = int(counts.get("total", 0))
        for field, value in counts.items():
            group = _GROUP_OF.get(field[:2])
            if group is not None and value:
                groups[group][field[2:]] += int(value)
        records.extend(recs)
    records.sort(key=lambda r: r.get("connected_at", 0))

    def ordered(c: Counter[str]) -> dict[str, int]:
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    return {
        "mode": mode,
        "total": sum(by_process.values()),
        "by_route": ordered(groups["route"]),
        "by_tenant": ordered(groups["tenant"]),
        "by_user": ordered(groups["user"]),
        "by_ip": ordered(groups["ip"]),
        "by_process": dict(sorted(by_process.items())),
        "connections": records,
        "generated_at": time.time(),
        **extra,
    }


class LocalRegistry:
    """The registry of this process (embedded mode): counters and records in memory."""

    mode = "local"

    def __init__(self, process: str | None = None) -> None:
        self.process = process or process_name()
        self.records: dict[str, ConnectionRecord] = {}
        self.counts: Counter[str] = Counter()
        #: Refusals by limit kind ("process", "tenant", "user", "ip").
        self.limited: Counter[str] = Counter()
        self.servers: list[WebSocketServer] = []
        self._ids = itertools.count(1)

    # -- wiring -----------------------------------------------------------------------
    def install(self, server: WebSocketServer) -> None:
        """Count ``server``'s connections and enforce the limits on its handshakes."""
        if server not in self.servers:
            self.servers.append(server)
            server.add_stage(self.admit, name="admission")

    def uninstall(self, server: WebSocketServer) -> None:
        """Stop counting ``server``'s connections."""
        if server in self.servers:
            self.servers.remove(server)
            server.pipeline.remove("admission")

    # -- admission --------------------------------------------------------------------
    def _record(self, ctx: Context) -> ConnectionRecord:
        request = ctx.request
        return ConnectionRecord(
            id=f"{next(self._ids)}", route=ctx.route.label, host=request.host, tenant_id=request.tenant_id,
            user_id=_user_id(ctx), remote_addr=request.remote_addr, connected_at=time.time(),
            process=self.process)

    def _local_refusal(self, checks: list[tuple[str, str, int]]) -> str | None:
        counts = self.counts
        for kind, field, limit in checks:
            if counts[field] >= limit:
                return kind
        return None

    def _deny(self, kind: str, ctx: Context) -> Deny:
        self.limited[kind] += 1
        return Deny(429, LIMIT_REASONS[kind], log_detail=f"connection limit ({kind}) reached on {ctx.route.label}")

    def _add(self, record: ConnectionRecord, fields: list[str]) -> None:
        self.records[record.id] = record
        counts = self.counts
        for field in fields:
            counts[field] += 1

    def _remove(self, record: ConnectionRecord, fields: list[str]) -> None:
        self.records.pop(record.id, None)
        counts = self.counts
        for field in fields:
            left = counts[field] - 1
            if left > 0:
                counts[field] = left
            else:
                del counts[field]

    async def admit(self, ctx: Context) -> Release:
        """Count the connection of ``ctx`` or refuse it with 429 when a limit is reached."""
        max_process = ws_settings.MAX_CONNECTIONS
        if max_process and self.counts["total"] >= max_process:
            raise self._deny("process", ctx)
        fields, checks = _fields_and_checks(ctx)
        kind = self._local_refusal(checks)
        if kind is not None:
            raise self._deny(kind, ctx)
        record = self._record(ctx)
        self._add(record, fields)
        return self._releaser(record, fields)

    def _releaser(self, record: ConnectionRecord, fields: list[str]) -> Release:
        released = False

        async def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._remove(record, fields)
        return release

    # -- reading ----------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Connections counted in this process."""
        return self.counts["total"]

    def local_snapshot(self, records: bool = False, mode: str | None = None, **extra: Any) -> dict[str, Any]:
        """This process's counts (and records)."""
        recs = [r.as_dict() for r in self.records.values()] if records else []
        return build_snapshot(mode or self.mode, [(self.process, dict(self.counts), recs)], **extra)

    async def snapshot(self, records: bool = False) -> dict[str, Any]:
        """Totals by route, tenant, user, IP and process: this process only in local mode."""
        return self.local_snapshot(records)

    async def close(self) -> None:
        """Release resources (the Redis client in cluster mode)."""


# Lua (rockstar_ws/registry/lua/*.lua): keys are built inside the scripts from the prefix, so
# cluster mode needs one Redis (or a primary with replicas), not Redis Cluster.
def lua_script(name: str) -> str:
    """The source of the registry's Lua script ``name`` (shipped as package data)."""
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")








class RedisRegistry(LocalRegistry):
    """Cluster mode: this process's counts in memory and, per process, in Redis."""

    mode = "cluster"

    def __init__(self, url: str, *, prefix: str = "rockstar_ws:live:", heartbeat: float = 3.0,
                 ttl: float = 10.0, timeout: float = 1.0, process: str | None = None) -> None:
        super().__init__(process)
        if ttl < 2 * heartbeat:
            raise ImproperlyConfigured(
                f"ROCKSTAR_WS['REGISTRY_TTL'] ({ttl}) must be at least twice REGISTRY_HEARTBEAT ({heartbeat}).")
        self.url = url
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.timeout = timeout
        base = f"{prefix}node:{self.process}"
        self._keys = [f"{prefix}nodes", f"{base}:alive", f"{base}:counts", f"{base}:conns"]
        self._ttl_ms = str(int(ttl * 1000))
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beat: asyncio.Task[None] | None = None
        self._scripts: dict[str, Any] = {}
        self._pending = 0
        self._dirty = False
        self._resyncing = False
        self._admitting = 0
        #: False while Redis is unreachable (connections are then counted in this process only).
        self.redis_ok = True
        self.last_error = ""

    # -- Redis plumbing ---------------------------------------------------------------
    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A burst of handshakes waits for a pooled connection instead of failing.
            self._client = waiting_client(self.url, self.timeout)
            self._scripts = {name: self._client.register_script(lua_script(name))
                             for name in ("admit", "release", "heartbeat", "resync", "snapshot")}
            self._loop = loop
            self._beat = None
        return self._client

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        self._redis()
        return await asyncio.wait_for(self._scripts[script](keys=keys, args=args), self.timeout * 2)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._dirty = True
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.redis_ok:
            self.redis_ok = False
            # One WARNING per outage for the whole process (rockstar_ws.outage), not one per subsystem.
            outage.failed(f"live registry at {_safe_url(self.url)}", what, exc, log=logger)

    def _recovered(self) -> None:
        if not self.redis_ok:
            self.redis_ok = True
            self.last_error = ""
            outage.recovered(f"live registry at {_safe_url(self.url)}", log=logger)

    def _ensure_heartbeat(self) -> None:
        self._redis()  # a client on the running loop first: a new loop resets the heartbeat
        self._beat = loop_task(self._beat, self._loop, self._heartbeat_loop)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.heartbeat)

    async def beat(self) -> None:
        """One heartbeat: keep this process's keys alive; rewrite them if Redis lost them."""
        try:
            kept = await self._call("heartbeat", self._keys, [self.process, self._ttl_ms, self.prefix])
            if (self._dirty or (not kept and self.counts)) and self._pending == 0:
                await self._resync()
            self._recovered()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed("heartbeat", exc)

    async def _resync(self) -> None:
        self._dirty = False
        counts = [x for kv in self.counts.items() for x in (kv[0], str(kv[1]))]
        recs = [x for r in self.records.values() for x in (r.id, json.dumps(r.as_dict()))]
        # An admission or release that reaches Redis while this runs may be overwritten by it:
        # it marks the state dirty so that the next heartbeat writes it again.
        self._resyncing = True
        try:
            await self._call("resync", self._keys,
                             [self.process, self._ttl_ms, str(len(self.counts)), *counts, *recs])
        finally:
            self._resyncing = False

    # -- admission --------------------------------------------------------------------
    async def admit(self, ctx: Context) -> Release:
        """Count the connection cluster-wide or refuse it with 429 when a limit is reached."""
        max_process = ws_settings.MAX_CONNECTIONS
        # Handshakes waiting for Redis hold a place too, or a burst could pass the process limit.
        if max_process and self.counts["total"] + self._admitting >= max_process:
            raise self._deny("process", ctx)
        self._ensure_heartbeat()
        fields, checks = _fields_and_checks(ctx)
        record = self._record(ctx)
        args: list[Any] = [self.prefix, self.process, self._ttl_ms, record.id,
                           json.dumps(record.as_dict()), str(len(checks))]
        for _kind, field, limit in checks:
            args += [field, str(limit)]
        args += fields
        if not self.redis_ok:  # an outage: count here at once; the heartbeat probes for Redis
            self._dirty = True
            kind = self._local_refusal(checks)
            if kind is not None:
                raise self._deny(kind, ctx)
            self._add(record, fields)
            return self._releaser(record, fields)
        self._pending += 1
        self._admitting += 1
        try:
            try:
                refused = int(await self._call("admit", self._keys, args))
                if self._resyncing:
                    self._dirty = True
                self._recovered()
            except asyncio.CancelledError:
                self._dirty = True
                raise
            except Exception as exc:
                self._failed("admission", exc)
                kind = self._local_refusal(checks)
                refused = 0 if kind is None else 1 + [c[0] for c in checks].index(kind)
            if refused:
                raise self._deny(checks[refused - 1][0], ctx)
            self._add(record, fields)
        finally:
            self._pending -= 1
            self._admitting -= 1
        return self._releaser(record, fields)

    def _releaser(self, record: ConnectionRecord, fields: list[str]) -> Release:
        released = False

        async def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._remove(record, fields)
            if not self.redis_ok:
                self._dirty = True
                return
            self._pending += 1
            try:
                await self._call("release", self._keys[2:], [record.id, *fields])
                if self._resyncing:
                    self._dirty = True
            except asyncio.CancelledError:
                self._dirty = True
                raise
            except Exception as exc:
                self._failed("release", exc)
            finally:
                self._pending -= 1
        return release

    # -- reading ----------------------------------------------------------------------
    async def snapshot(self, records: bool = False) -> dict[str, Any]:
        """Cluster-wide totals from every live process (this process's own view if Redis fails)."""
        try:
            rows = await self._call("snapshot", self._keys[:1], [self.prefix, "1" if records else "0"])
        except Exception as exc:
            self._failed("snapshot", exc)
            return self.local_snapshot(records, mode="local", error=f"Redis unavailable: {self.last_error}")
        nodes = []
        for node, flat, recs in rows:
            counts = {text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
            nodes.append((text(node), counts, [json.loads(r) for r in recs]))
        return build_snapshot(self.mode, nodes, heartbeat=self.heartbeat, ttl=self.ttl)

    async def close(self) -> None:
        """Stop the heartbeat and close the Redis client."""
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._client is not None:
            await close_client(self._client)
            self._client = None


def _safe_url(url: str) -> str:
    """The URL without its password (never log credentials)."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def _is_channels_redis(backend: Any) -> bool:
    """True for channels-redis layers and their subclasses (rockstar_ws.layers.RedisChannelLayer)."""
    if "channels_redis" in str(backend):
        return True
    try:
        cls = import_string(backend) if isinstance(backend, str) else backend
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, RedisChannelLayer)


def redis_url_from_settings() -> str:
    """``REGISTRY_REDIS_URL``, or the first host of a channels_redis ``CHANNEL_LAYER``, or ''."""
    url = ws_settings.REGISTRY_REDIS_URL
    if url is not None:
        return str(url)
    layer = (getattr(django_settings, "CHANNEL_LAYERS", {}) or {}).get(ws_settings.CHANNEL_LAYER) or {}
    if not _is_channels_redis(layer.get("BACKEND", "")):
        return ""
    hosts = (layer.get("CONFIG") or {}).get("hosts") or []
    if not hosts:
        return "redis://localhost:6379/0"
    host = hosts[0]
    if isinstance(host, str):
        return host
    if isinstance(host, dict):
        return str(host.get("address") or f"redis://{host.get('host', 'localhost')}:{host.get('port', 6379)}")
    if isinstance(host, (tuple, list)) and len(host) >= 2:
        return f"redis://{host[0]}:{host[1]}"
    raise ImproperlyConfigured(f"Cannot read a Redis URL from CHANNEL_LAYERS host {host!r}; "
                               "set ROCKSTAR_WS['REGISTRY_REDIS_URL'].")


_registry: LocalRegistry | None = None


def get_registry() -> LocalRegistry:
    """The registry of this process, built from settings on first use."""
    global _registry
    if _registry is None:
        url = redis_url_from_settings()
        if url:
            _registry = RedisRegistry(url, prefix=ws_settings.REGISTRY_KEY_PREFIX,
                                      heartbeat=float(ws_settings.REGISTRY_HEARTBEAT),
                                      ttl=float(ws_settings.REGISTRY_TTL),
                                      timeout=float(ws_settings.REGISTRY_REDIS_TIMEOUT))
        else:
            _registry = LocalRegistry()
    return _registry


#: Servers whose connections the process registry counts (see :func:`install`).
installed_servers: list[WebSocketServer] = []


async def admit(ctx: Context) -> Release:
    """The admission check :func:`install` adds: the process registry of the moment admits ``ctx``."""
    return await (_registry or get_registry()).admit(ctx)


def install(server: WebSocketServer) -> bool:
    """Count ``server``'s connections in this process's registry and enforce the limits on its
    handshakes; does nothing (and returns False) when ``LIVE_REGISTRY`` is off."""
    if not ws_settings.LIVE_REGISTRY:
        return False
    if server not in installed_servers:
        installed_servers.append(server)
        server.add_stage(admit, name="admission")
    return True


def reset_registry() -> None:
    """Forget the process registry; the next connection builds one from the current settings."""
    global _registry
    _registry = None


@register("rockstar_ws")
def check_registry(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Registry and limit settings that would fail at the first connection (``rockstar_ws.E1xx``)."""
    errors: list[Any] = []
    try:
        if not ws_settings.LIVE_REGISTRY:
            return errors
        for key in ("MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_TENANT", "MAX_CONNECTIONS_PER_USER",
                    "MAX_CONNECTIONS_PER_IP"):
            value = getattr(ws_settings, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors.append(Error(f"ROCKSTAR_WS[{key!r}] is {value!r}", hint="Use an int >= 0 (0: no limit).",
                                    id="rockstar_ws.E101"))
        heartbeat, ttl = float(ws_settings.REGISTRY_HEARTBEAT), float(ws_settings.REGISTRY_TTL)
        if heartbeat <= 0 or ttl < 2 * heartbeat:
            errors.append(Error(f"REGISTRY_HEARTBEAT={heartbeat}, REGISTRY_TTL={ttl}",
                                hint="Use a heartbeat > 0 and a TTL of at least twice the heartbeat.",
                                id="rockstar_ws.E102"))
        redis_url_from_settings()
    except Exception as exc:
        errors.append(Error(str(exc), hint="Fix the live-registry settings (docs/connections.md).",
                            id="rockstar_ws.E103"))
    return errors


ws_settings.on_change(reset_registry, "ROCKSTAR_WS", "CHANNEL_LAYERS")
