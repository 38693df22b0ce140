"""Presence wired into connections and the server (docs/presence.md).

``await conn.join(group, presence=True, info=..., on_presence=...)`` lists the connection in
``group`` cluster-wide and, with ``on_presence``, hands it each coalesced
:class:`~rockstar_ws.presence.events.PresenceUpdate` of the group. ``server.presence(group)`` and
``server.presence_stats(group)`` (and their sync twins) read the listing.

One :class:`PresenceService` per ``WebSocketServer`` and event loop holds the store the
``PRESENCE`` setting names (:func:`presence_config`), this process's coalescer, and the
subscribers of each group. With the Redis store, the updates of every process travel over one
Redis pub/sub channel per server, so a member hears about joins in every process; in memory
(embedded mode) there is one process and nothing travels.

The store's heartbeat starts with the first presence join of the process and stops when daphne
shuts down (after this process's members have left, so others see their leaves at once); a
process killed with ``kill -9`` drops out of every listing within the store's ``TTL``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from ..conf import ws_settings
from ..core.errors import ConnectionClosed
from ..core.messages import CloseCode
from ..core.outage import outage
from ..groups import validate_group_name
from ..registry import process_name
from . import store as stores
from .events import DEFAULT_INTERVAL, PresenceCoalescer, PresenceUpdate
from .store import Member, PresenceError, PresenceStats

if TYPE_CHECKING:
    from ..core.connection import WebSocketConnection
    from ..engine.server import WebSocketServer

__all__ = [
    "PRESENCE_KEYS",
    "PresenceConfig",
    "PresenceService",
    "PresenceUnavailable",
    "connection_id",
    "presence_config",
    "presence_json",
    "service_for",
]

logger = logging.getLogger("rockstar_ws.presence")

OnPresence = Callable[[PresenceUpdate], Awaitable[None] | None]

#: The keys of ``ROCKSTAR_WS["PRESENCE"]``.
PRESENCE_KEYS = ("REDIS", "KEY_PREFIX", "HEARTBEAT", "TTL", "INTERVAL", "MAX_INFO_BYTES", "MAX_ENTRIES")
DEFAULT_KEY_PREFIX = "rockstar_ws:presence:"
_SHUTDOWN_TIMEOUT = 2.0
_LEAVE_RETRIES = 5


class PresenceUnavailable(RuntimeError):
    """A presence join could not reach the store (Redis down); the group join was undone."""


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """``ROCKSTAR_WS["PRESENCE"]`` read and checked: ``redis`` None means in memory."""

    redis: str | Mapping[str, Any] | None
    key_prefix: str
    heartbeat: float
    ttl: float
    interval: float
    max_info_bytes: int
    max_entries: int | None

    @property
    def where(self) -> str:
        """The store for log lines and docs, without credentials."""
        if self.redis is None:
            return "memory"
        if isinstance(self.redis, str):
            from ..registry.redis import safe_url as _safe_url

            return _safe_url(self.redis)
        if "master_name" in self.redis:
            return f"sentinel master {self.redis['master_name']!r}"
        from ..registry.redis import safe_url as _safe_url

        return _safe_url(str(self.redis.get("address", "redis")))


def _number(config: Mapping[str, Any], key: str, default: float, *, positive: bool = True) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (positive and not value > 0):
        raise ImproperlyConfigured(f"ROCKSTAR_WS['PRESENCE'][{key!r}] must be a number of seconds > 0, "
                                   f"got {value!r}")
    return float(value)


def _default_redis() -> str | Mapping[str, Any] | None:
    """The live registry's Redis (REGISTRY_REDIS_URL or the channel layer's first host), or None."""
    from ..registry import registry_redis

    return registry_redis() or None


def presence_config() -> PresenceConfig:
    """Read ``ROCKSTAR_WS["PRESENCE"]``; raises ``ImproperlyConfigured`` naming the fix.

    ``REDIS`` absent or None: the live registry's Redis when it has one, else in memory; ``""``:
    in memory; a URL or a channels-redis host dict (``{"address": url}`` or ``{"sentinels": [...],
    "master_name": name}``): that Redis.
    """
    config = ws_settings.PRESENCE
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(f"ROCKSTAR_WS['PRESENCE'] must be a dict, got {type(config).__name__}")
    unknown = sorted(set(config) - set(PRESENCE_KEYS), key=str)
    if unknown:
        raise ImproperlyConfigured(f"unknown ROCKSTAR_WS['PRESENCE'] key(s) {unknown}; the keys are "
                                   f"{', '.join(PRESENCE_KEYS)}")
    redis = config.get("REDIS")
    if redis is None:
        redis = _default_redis()
    elif redis == "":
        redis = None
    elif isinstance(redis, str):
        if not redis.startswith(("redis://", "rediss://", "unix://")):
            raise ImproperlyConfigured(f"ROCKSTAR_WS['PRESENCE']['REDIS'] must start with redis://, rediss:// or "
                                       f"unix://, got {redis!r}")
    elif isinstance(redis, Mapping):
        from ..core.redis import redis_from_config

        # Checks the dict's shape; connects to nothing yet.
        redis_from_config(redis, setting="ROCKSTAR_WS['PRESENCE']['REDIS']")
    else:
        raise ImproperlyConfigured("ROCKSTAR_WS['PRESENCE']['REDIS'] must be a URL, a channels-redis host dict, "
                                   f"'' or None, got {type(redis).__name__}")
    prefix = config.get("KEY_PREFIX", DEFAULT_KEY_PREFIX)
    if not isinstance(prefix, str) or not prefix:
        raise ImproperlyConfigured("ROCKSTAR_WS['PRESENCE']['KEY_PREFIX'] must be a non-empty string")
    heartbeat = _number(config, "HEARTBEAT", float(ws_settings.REGISTRY_HEARTBEAT))
    ttl = _number(config, "TTL", float(ws_settings.REGISTRY_TTL))
    if ttl < 2 * heartbeat:
        raise ImproperlyConfigured(f"ROCKSTAR_WS['PRESENCE']: TTL ({ttl:g}) must be at least twice HEARTBEAT "
                                   f"({heartbeat:g}); one missed heartbeat is not death")
    interval = _number(config, "INTERVAL", DEFAULT_INTERVAL)
    max_info = config.get("MAX_INFO_BYTES", stores.DEFAULT_MAX_INFO_BYTES)
    if isinstance(max_info, bool) or not isinstance(max_info, int) or max_info < 2:
        raise ImproperlyConfigured(f"ROCKSTAR_WS['PRESENCE']['MAX_INFO_BYTES'] must be an int >= 2, got {max_info!r}")
    max_entries = config.get("MAX_ENTRIES")
    if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                    or max_entries < 1):
        raise ImproperlyConfigured(f"ROCKSTAR_WS['PRESENCE']['MAX_ENTRIES'] must be None or an int >= 1, "
                                   f"got {max_entries!r}")
    return PresenceConfig(redis, prefix, heartbeat, ttl, interval, max_info, max_entries)


def _client_factory(config: PresenceConfig) -> Callable[[], Any] | None:
    if config.redis is None or isinstance(config.redis, str):
        return None
    from ..core.redis import redis_from_config

    options = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    return lambda: redis_from_config(config.redis, **options)  # type: ignore[arg-type]


def _build_store(config: PresenceConfig, server_name: str, on_expired: Any = None) -> stores.PresenceStore:
    if config.redis is None:
        return stores.LocalPresenceStore(max_info_bytes=config.max_info_bytes)
    return stores.RedisPresenceStore(
        config.redis if isinstance(config.redis, str) else config.where,
        prefix=f"{config.key_prefix}{server_name}:", heartbeat=config.heartbeat, ttl=config.ttl,
        max_info_bytes=config.max_info_bytes, on_expired=on_expired, client_factory=_client_factory(config))


def _new_client(config: PresenceConfig) -> Any:
    factory = _client_factory(config)
    if factory is not None:
        return factory()
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(str(config.redis), socket_connect_timeout=1.0)


def _events_channel(config: PresenceConfig, server_name: str) -> str:
    return f"{config.key_prefix}{server_name}:events"


def _encode_update(origin: str, update: PresenceUpdate) -> str:
    return json.dumps({"o": origin, "g": update.group, "j": [m.as_dict() for m in update.joined],
                       "l": [m.as_dict() for m in update.left], "x": update.omitted},
                      separators=(",", ":"), ensure_ascii=False)


def _decode_update(raw: Any) -> tuple[str, PresenceUpdate]:
    data = json.loads(raw)
    group = validate_group_name(data["g"])
    return data["o"], PresenceUpdate(group, tuple(Member.from_dict(m) for m in data["j"]),
                                     tuple(Member.from_dict(m) for m in data["l"]), int(data.get("x") or 0))


_json_cache: dict[int, tuple[PresenceUpdate, str]] = {}


def presence_json(update: PresenceUpdate, type_: str = "presence") -> str:
    """``{"type": "presence", "group", "joined": [...], "left": [...]}`` as compact JSON, encoded
    once per update (an ``on_presence`` of 2,000 members sends the same text 2,000 times)."""
    key = id(update)
    hit = _json_cache.get(key)
    if hit is not None and hit[0] is update and type_ == "presence":
        return hit[1]
    text = json.dumps({"type": type_, **update.as_dict()}, separators=(",", ":"), ensure_ascii=False)
    if type_ == "presence":
        if len(_json_cache) >= 32:
            _json_cache.pop(next(iter(_json_cache)))
        _json_cache[key] = (update, text)
    return text


class _Subscriber:
    """One connection's ``on_presence`` for one group: updates in order, one at a time, in the
    context the connection joined from, so a slow callback delays only its own connection."""

    __slots__ = ("conn", "group", "callback", "context", "queue", "worker")

    def __init__(self, conn: WebSocketConnection, group: str, callback: OnPresence) -> None:
        self.conn = conn
        self.group = group
        self.callback = callback
        self.context = contextvars.copy_context()
        self.queue: deque[PresenceUpdate] = deque()
        self.worker: asyncio.Task[None] | None = None

    def push(self, update: PresenceUpdate, loop: asyncio.AbstractEventLoop) -> None:
        self.queue.append(update)
        if self.worker is None:
            self.worker = loop.create_task(self._run(), context=self.context)

    async def _run(self) -> None:
        try:
            while self.queue and not self.conn.closed:
                update = self.queue.popleft()
                try:
                    result = self.callback(update)
                    if inspect.isawaitable(result):
                        await result
                except ConnectionClosed:
                    return
                except Exception:
                    logger.exception("on_presence of %s for group %r raised", self.conn, self.group)
        finally:
            self.worker = None
            if self.conn.closed:
                self.queue.clear()


class PresenceService:
    """Presence of one ``WebSocketServer`` in one process, bound to the loop that serves it."""

    def __init__(self, server: WebSocketServer, loop: asyncio.AbstractEventLoop,
                 config: PresenceConfig | None = None) -> None:
        self.server = server
        self.loop = loop
        self.config = config or presence_config()
        self.store = _build_store(self.config, server.name, on_expired=self._expired)
        self.coalescer = PresenceCoalescer(self._emit, interval=self.config.interval,
                                           max_entries=self.config.max_entries)
        self.origin = f"{process_name()}/{secrets.token_hex(4)}"
        self._ids: dict[WebSocketConnection, str] = {}
        self._subs: dict[str, dict[WebSocketConnection, _Subscriber]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._bus: _Bus | None = _Bus(self) if self.config.redis is not None else None
        self._shutdown_watched = False
        #: Process-local counters: updates emitted here, received from others, callbacks run.
        self.counters = {"emitted": 0, "received": 0, "delivered": 0}

    # -- connections ---------------------------------------------------------------------
    def connection_id(self, conn: WebSocketConnection) -> str:
        """The connection's presence id: random, so it names neither a host nor a count."""
        cid = self._ids.get(conn)
        if cid is None:
            cid = self._ids[conn] = secrets.token_urlsafe(9)
            conn._on_close.append(self._closed)
        return cid

    async def join(self, conn: WebSocketConnection, group: str, info: dict[str, Any] | None,
                   on_presence: OnPresence | None) -> Member:
        """List ``conn`` in ``group`` (again: its info and callback are replaced); return its member."""
        if conn.closed:
            raise ConnectionClosed(conn.close_code or CloseCode.NO_STATUS, conn.close_reason)
        cid = self.connection_id(conn)
        request = conn.ctx.request
        member = self.store.member(cid, _user_id(conn), request.tenant_id, info)
        self._watch_shutdown(conn)
        if on_presence is not None and self._bus is not None:
            await self._bus.start()  # subscribed before listed: no update of others is missed
        try:
            first = await self.store.join(group, member)
        except PresenceError:
            raise
        except Exception as exc:
            outage.failed(f"presence store at {self.config.where}", "joining a group", exc, holds=False,
                          log=logger)
            raise PresenceUnavailable(f"presence store unreachable ({type(exc).__name__}); not joined") from exc
        stored = self.store.own.get(group, {}).get(cid, member)
        subs = self._subs.setdefault(group, {})
        if on_presence is not None:
            subs[conn] = _Subscriber(conn, group, on_presence)
        else:
            subs.pop(conn, None)
        if conn.closed:  # closed while the store joined: the close's leave may have missed it
            self._spawn(self._leave_quietly(conn, group, cid))
        elif first:
            self.coalescer.joined(group, stored)
        return stored

    async def leave(self, conn: WebSocketConnection, group: str) -> None:
        """Remove ``conn`` from ``group``'s presence (no-op when it is not listed)."""
        self._drop_subscriber(conn, group)
        cid = self._ids.get(conn)
        if cid is not None:
            await self._leave(group, cid)

    async def _leave(self, group: str, cid: str) -> None:
        member = self.store.own.get(group, {}).get(cid)
        if member is None:
            return
        if await self.store.leave(group, cid):
            self.coalescer.left(group, member)

    async def _leave_quietly(self, conn: WebSocketConnection | None, group: str, cid: str) -> None:
        delay = 0.2
        for attempt in range(_LEAVE_RETRIES):
            try:
                await self._leave(group, cid)
                return
            except Exception as exc:  # Redis down: the store kept the member, so try again
                if attempt == _LEAVE_RETRIES - 1:
                    outage.failed(f"presence store at {self.config.where}", "leaving a group", exc,
                                  holds=False, log=logger)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.heartbeat)

    def _drop_subscriber(self, conn: WebSocketConnection, group: str) -> None:
        subs = self._subs.get(group)
        if subs is not None:
            subs.pop(conn, None)
            if not subs:
                del self._subs[group]

    def _closed(self, conn: WebSocketConnection) -> None:
        """on-close callback: leave every group, in the background (the close path is sync)."""
        cid = self._ids.pop(conn, None)
        for group in [g for g, subs in self._subs.items() if conn in subs]:
            self._drop_subscriber(conn, group)
        if cid is None:
            return
        for group in [g for g, conns in self.store.own.items() if cid in conns]:
            self._spawn(self._leave_quietly(None, group, cid))

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- updates -------------------------------------------------------------------------
    def _expired(self, group: str, member: Member) -> None:
        """A dead process's user left (its last connection died with it)."""
        self.coalescer.left(group, member)

    async def _emit(self, update: PresenceUpdate) -> None:
        self.counters["emitted"] += 1
        self.deliver(update)
        if self._bus is not None:
            await self._bus.publish(update)

    def deliver(self, update: PresenceUpdate) -> int:
        """Hand ``update`` to this process's subscribers of its group; returns how many."""
        subs = self._subs.get(update.group)
        if not subs:
            return 0
        for sub in list(subs.values()):
            sub.push(update, self.loop)
        self.counters["delivered"] += len(subs)
        return len(subs)

    # -- reading -------------------------------------------------------------------------
    async def members(self, group: str) -> list[Member]:
        """Every member of ``group`` (every process with the Redis store), oldest first."""
        validate_group_name(group)
        return await self.store.members(group)

    async def stats(self, group: str) -> PresenceStats:
        """Connections and distinct users of ``group``."""
        validate_group_name(group)
        return await self.store.stats(group)

    # -- shutdown ------------------------------------------------------------------------
    def _watch_shutdown(self, conn: WebSocketConnection) -> None:
        if self._shutdown_watched or getattr(conn._bridge, "name", "") != "daphne":
            return
        self._shutdown_watched = True
        from twisted.internet import defer, reactor

        def before_shutdown() -> Any:
            return defer.Deferred.fromFuture(asyncio.ensure_future(self.aclose()))

        reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)  # type: ignore[arg-type]  # twisted types the phase argument as a callable

    async def aclose(self) -> None:
        """Leave every group, send the last updates now, stop the heartbeat (at most 2 s)."""
        try:
            async with asyncio.timeout(_SHUTDOWN_TIMEOUT):
                for group, conns in list(self.store.own.items()):
                    for cid in list(conns):
                        await self._leave(group, cid)
                await self.coalescer.aclose(flush=True)
        except Exception as exc:  # shutting down: what is left expires by TTL
            logger.info("presence: leaving at shutdown stopped early (%s); the rest expires by TTL",
                        type(exc).__name__)
        finally:
            if self._bus is not None:
                await self._bus.close()
            await self.store.close()


class _Bus:
    """The updates of every process of a server, over one Redis pub/sub channel."""

    def __init__(self, service: PresenceService) -> None:
        self.service = service
        self.channel = _events_channel(service.config, service.server.name)
        self._client: Any = None
        self._pubsub: Any = None
        self._ready: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def _redis(self) -> Any:
        if self._client is None:
            self._client = _new_client(self.service.config)
        return self._client

    async def start(self) -> None:
        if self._ready is None:
            self._ready = self.service.loop.create_future()
            try:
                self._pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(self.channel)
            except BaseException as exc:
                self._ready.set_exception(exc)
                self._ready.exception()  # retrieved: a later start() tries again
                self._ready = None
                raise PresenceUnavailable(f"presence events unreachable ({type(exc).__name__})") from exc
            self._task = self.service.loop.create_task(self._listen())
            self._ready.set_result(None)
        elif not self._ready.done():
            await asyncio.shield(self._ready)

    async def publish(self, update: PresenceUpdate) -> None:
        try:
            await self._redis().publish(self.channel, _encode_update(self.service.origin, update))
        except Exception as exc:
            outage.failed(f"presence events at {self.service.config.where}", "publishing an update", exc,
                          holds=False, log=logger)

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            try:
                message = await self._pubsub.get_message(timeout=5.0)
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outage.failed(f"presence events at {self.service.config.where}", "receiving updates", exc,
                              log=logger)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                try:  # a new connection, subscribed again
                    await self._pubsub.aclose()
                    self._pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
                    await self._pubsub.subscribe(self.channel)
                    outage.recovered(f"presence events at {self.service.config.where}", log=logger)
                except Exception:  # still down: the next round tries again
                    pass
                continue
            if not message or message.get("type") != "message":
                continue
            try:
                origin, update = _decode_update(message["data"])
            except Exception:  # not ours (another writer on the channel): drop it
                logger.warning("presence: dropped a malformed update on %s", self.channel)
                continue
            if origin != self.service.origin:
                self.service.counters["received"] += 1
                self.service.deliver(update)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:  # cancelled on purpose
                pass
        for thing in (self._pubsub, self._client):
            if thing is not None:
                try:
                    await thing.aclose()
                except Exception:  # closing anyway
                    pass


def _user_id(conn: WebSocketConnection) -> str | None:
    uid = conn.ctx.request.user_id
    if uid is not None:
        return str(uid)
    user = conn.ctx.user
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None


# -- the hooks of connection.py and server.py --------------------------------------------------
def service_for(server: WebSocketServer) -> PresenceService:
    """The server's presence service on the running loop (created on the first presence join)."""
    loop = asyncio.get_running_loop()
    service: PresenceService | None = getattr(server, "_presence_service", None)
    if service is None or service.loop is not loop:
        if service is not None and service.loop.is_running() and not service.loop.is_closed():
            raise RuntimeError("Connections of one WebSocketServer must be served by one event loop")
        service = PresenceService(server, loop)
        server._presence_service = service  # type: ignore[attr-defined]
    return service


def _running_service(server: WebSocketServer) -> PresenceService | None:
    service: PresenceService | None = getattr(server, "_presence_service", None)
    if service is None or service.loop.is_closed() or not service.loop.is_running():
        return None
    return service


def prepare_join(conn: WebSocketConnection, group: str, presence: bool, info: dict[str, Any] | None,
                 on_presence: OnPresence | None) -> Callable[[], Awaitable[Member]] | None:
    """Check ``conn.join``'s presence arguments before the group join; return the presence join
    to run after it (None without presence). Raises ``TypeError``/``ValueError`` for bad ones."""
    if not isinstance(presence, bool):
        raise TypeError(f"presence must be True or False, not {presence!r}")
    if not presence:
        if info is not None or on_presence is not None:
            raise ValueError("info and on_presence need presence=True: conn.join(group, presence=True, ...)")
        return None
    if info is not None and not isinstance(info, dict):
        raise PresenceError(f"info must be a dict (a JSON object), not {type(info).__name__}")
    if on_presence is not None and not callable(on_presence):
        raise TypeError(f"on_presence must be a callable taking a PresenceUpdate, not {on_presence!r}")
    validate_group_name(group)

    async def run() -> Member:
        return await service_for(conn.ctx.server).join(conn, group, info, on_presence)
    return run


async def leave_presence(conn: WebSocketConnection, group: str) -> None:
    """``conn.leave(group)``'s presence part: nothing to do unless the server has presence here."""
    service = _running_service(conn.ctx.server)
    if service is not None and service.loop is asyncio.get_running_loop():
        await service.leave(conn, group)


def connection_id(conn: WebSocketConnection) -> str | None:
    """The presence id of ``conn`` (the ``connection_id`` of its members), None if it never joined
    a group with presence."""
    service = getattr(conn.ctx.server, "_presence_service", None)
    return service._ids.get(conn) if service is not None else None


async def _on_service_loop(server: WebSocketServer, name: str, group: str) -> Any:
    service = _running_service(server)
    if service is not None:
        if service.loop is asyncio.get_running_loop():
            return await getattr(service, name)(group)
        # Called from another thread of a server process (a sync view): ask the serving loop.
        fut = asyncio.run_coroutine_threadsafe(getattr(service, name)(group), service.loop)
        return await asyncio.wrap_future(fut)
    return None


async def presence(server: WebSocketServer, group: str) -> list[Member]:
    """``server.presence(group)``."""
    validate_group_name(group)
    found = await _on_service_loop(server, "members", group)
    if found is not None:
        return found
    return await _read_elsewhere(server, "members", group)


async def presence_stats(server: WebSocketServer, group: str) -> PresenceStats:
    """``server.presence_stats(group)``."""
    validate_group_name(group)
    found = await _on_service_loop(server, "stats", group)
    if found is not None:
        return found
    return await _read_elsewhere(server, "stats", group)


async def _read_elsewhere(server: WebSocketServer, name: str, group: str) -> Any:
    """A process without members of its own (a management command): read Redis directly."""
    config = presence_config()
    if config.redis is None:  # in memory: a process that serves nobody lists nobody
        return [] if name == "members" else PresenceStats(0, 0)
    expired: list[Member] = []
    store = _build_store(config, server.name, on_expired=lambda g, m: expired.append(m))
    try:
        result = await getattr(store, name)(group)
        if expired:
            # Its read swept a dead process: nobody else will see those users go, so tell them.
            client = _new_client(config)
            try:
                update = PresenceUpdate(group, (), tuple(expired))
                await client.publish(_events_channel(config, server.name), _encode_update("reader", update))
            finally:
                await client.aclose()
        return result
    finally:
        await store.close()


@register("rockstar_ws")
def check_presence(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """A ``PRESENCE`` setting that would fail at the first presence join (``rockstar_ws.E130``)."""
    try:
        presence_config()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Fix ROCKSTAR_WS['PRESENCE'] (docs/presence.md).", id="rockstar_ws.E130")]
    except Exception:  # unreadable settings are reported by check_settings
        return []
    return []
