"""The cluster-wide registry in Redis: per-process counters and records, cluster-wide limits."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from ..conf import ws_settings
from ..core.errors import Deny
from ..core.outage import outage
from ..core.redis import client_for, close_client, loop_task, text

if TYPE_CHECKING:
    from ..core.context import Context

from .local import LocalRegistry
from .records import ConnectionRecord, build_snapshot, fields_and_checks

__all__ = ["RedisRegistry", "lua_script", "safe_url"]

logger = logging.getLogger("rockstar_ws.registry")

Release = Callable[[], Awaitable[None]]


# Lua (rockstar_ws/registry/lua/*.lua): keys are built inside the scripts from the prefix, so
# cluster mode needs one Redis (or a primary with replicas), not Redis Cluster.
def lua_script(name: str) -> str:
    """The source of the registry's Lua script ``name`` (shipped as package data)."""
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


#: Operations of one batch script at most (a longer queue goes in several, one after the other).
BATCH_MAX = 500


def pool_timeout(exc: BaseException) -> bool:
    """True for redis-py's "no free connection in the pool in time" (Redis itself may be fine)."""
    return type(exc).__name__ == "ConnectionError" and "No connection available" in str(exc)


class RedisRegistry(LocalRegistry):
    """Cluster mode: this process's counts in memory and, per process, in Redis."""

    mode = "cluster"

    def __init__(self, url: str, *, prefix: str = "rockstar_ws:live:", heartbeat: float = 3.0,
                 ttl: float = 10.0, timeout: float = 1.0, process: str | None = None,
                 client_factory: Callable[[], Any] | None = None) -> None:
        super().__init__(process)
        if ttl < 2 * heartbeat:
            raise ImproperlyConfigured(
                f"ROCKSTAR_WS['REGISTRY_TTL'] ({ttl}) must be at least twice REGISTRY_HEARTBEAT ({heartbeat}).")
        self.url = url
        #: Builds the ``redis.asyncio`` client instead of ``url`` (a Sentinel master); once per loop.
        self.client_factory = client_factory
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
        #: The replication id of the Redis master the last heartbeat reached (a new one: resync).
        self._replid: str | None = None
        #: Admissions and releases waiting for the next batch script: (operation, its result).
        self._queue: list[tuple[list[str], asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: Batch scripts sent and operations they carried (docs/connections.md, "Bursts").
        self.batches = 0
        self.batched = 0
        self._pool_dry_since: float | None = None
        #: True once the process has left Redis (:meth:`leave`): handshakes are refused with 503.
        self.left = False
        #: False while Redis is unreachable (connections are then counted in this process only).
        self.redis_ok = True
        self.last_error = ""

    # -- Redis plumbing ---------------------------------------------------------------
    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A burst of handshakes waits for a pooled connection instead of failing.
            self._client = client_for(self.url, self.timeout, self.client_factory)
            self._scripts = {name: self._client.register_script(lua_script(name))
                             for name in ("batch", "heartbeat", "leave", "resync", "snapshot")}
            self._loop = loop
            self._beat = None
            self._queue = []  # futures of an ended loop: nobody waits for them any more
            self._flusher = None
        return self._client

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        self._redis()
        return await asyncio.wait_for(self._scripts[script](keys=keys, args=args), self.timeout * 2)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._dirty = True
        self.last_error = f"{type(exc).__name__}: {exc}"
        if not self.redis_ok:
            return
        self.redis_ok = False
        if pool_timeout(exc):
            # Redis may answer fine: this process had more calls in flight than its pool holds.
            # Not an outage of Redis, so not reported as one (the log says which it was).
            self._pool_dry_since = time.monotonic()
            logger.warning(
                "live registry at %s: no free connection in its Redis pool within %.1fs while %s "
                "(pool exhausted, Redis not known to be down): counting in this process until the "
                "next heartbeat reaches Redis", safe_url(self.url), self.timeout, what)
            return
        # One WARNING per outage for the whole process (rockstar_ws.outage), not one per subsystem.
        outage.failed(f"live registry at {safe_url(self.url)}", what, exc, log=logger)

    def _recovered(self) -> None:
        if not self.redis_ok:
            self.redis_ok = True
            self.last_error = ""
            if self._pool_dry_since is not None:
                logger.info("live registry at %s: its Redis pool has free connections again after %.1fs",
                            safe_url(self.url), time.monotonic() - self._pool_dry_since)
                self._pool_dry_since = None
                return
            outage.recovered(f"live registry at {safe_url(self.url)}", log=logger)

    # -- batching -------------------------------------------------------------------------
    async def _run(self, op: list[str]) -> int:
        """Queue one operation for the next batch script and wait for its result.

        Every admission and release of one event-loop tick goes to Redis as one EVALSHA
        (``lua/batch.lua``), one batch in flight at a time: a burst of handshakes needs one pooled
        connection, not one each, and the operations stay in the order they were queued.
        """
        future = self._enqueue(op)
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelled after the batch answered but before this task resumed: an admission
            # Redis made must be given back, or it stays counted for a connection nobody has.
            if (op[0] == "a" and future.done() and not future.cancelled() and future.exception() is None
                    and future.result() == 0):
                self._undo(op)
            raise

    def _enqueue(self, op: list[str]) -> asyncio.Future[int]:
        self._redis()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return future

    def _undo(self, op: list[str]) -> None:
        """Queue the release of admission ``op`` (Redis admitted it; its waiter is gone).

        The release goes in the next batch, after the admission (batches keep their order), and
        ``lua/batch.lua`` decrements only when the record was there: exact whichever ran."""
        n = int(op[3])
        fields = op[5 + 2 * n:]
        self._enqueue(["r", op[1], str(len(fields)), *fields]).add_done_callback(self._undone)

    def _undone(self, future: asyncio.Future[int]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._dirty = True  # not given back: the next heartbeat rewrites this process's state

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # one loop tick: the handshakes of this iteration join the batch
        while self._queue:
            batch = self._queue[:BATCH_MAX]
            del self._queue[:BATCH_MAX]
            args: list[str] = [self.prefix, self.process, self._ttl_ms]
            for op, _future in batch:
                args += op
            try:
                results = await self._call("batch", self._keys, args)
            except BaseException as exc:
                for _op, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                    else:  # its waiter gave up: Redis may or may not have run it
                        self._dirty = True
                if not isinstance(exc, Exception):
                    raise
                continue
            self.batches += 1
            self.batched += len(batch)
            for (op, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(int(result))
                elif op[0] == "a" and int(result) == 0:
                    # Counted in Redis for a handshake that gave up waiting (daphne cancels an
                    # application it timed out): given back in the next batch. Left to the
                    # heartbeat's rewrite, it stayed counted while a storm kept handshakes in
                    # flight (the rewrite waits for a moment with none).
                    self._undo(op)

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
            kept, replid = await self._call("heartbeat", self._keys, [self.process, self._ttl_ms, self.prefix])
            replid = text(replid)
            if self._replid is not None and replid != self._replid:
                # Another master (a Sentinel failover, a Redis restarted empty): replication is
                # asynchronous, so it may lack this process's last admissions and releases.
                self._dirty = True
            self._replid = replid
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
        if self.left:  # shutting down: a connection admitted now would be counted again
            raise Deny(503, "server shutting down")
        max_process = ws_settings.MAX_CONNECTIONS
        # Handshakes waiting for Redis hold a place too, or a burst could pass the process limit.
        if max_process and self.counts["total"] + self._admitting >= max_process:
            raise self._deny("process", ctx)
        self._ensure_heartbeat()
        fields, checks = fields_and_checks(ctx)
        record = self._record(ctx)
        if not self.redis_ok:  # an outage: count here at once; the heartbeat probes for Redis
            self._dirty = True
            kind = self._local_refusal(checks)
            if kind is not None:
                raise self._deny(kind, ctx)
            self._add(record, fields)
            return self._releaser(record, fields, sent=False)
        op: list[str] = ["a", record.id, json.dumps(record.as_dict()), str(len(checks))]
        for _kind, field, limit in checks:
            op += [field, str(limit)]
        op.append(str(len(fields)))
        op += fields
        self._pending += 1
        self._admitting += 1
        try:
            try:
                refused = await self._run(op)
                if self._resyncing:
                    self._dirty = True
                self._recovered()
            except asyncio.CancelledError:
                raise  # what Redis admitted for it is given back (_run, _flush)
            except Exception as exc:
                # Redis may have run the batch (a reply too late is a timeout here): counted here
                # now; its release removes it from Redis too if it is there (_releaser).
                self._failed("admission", exc)
                kind = self._local_refusal(checks)
                refused = 0 if kind is None else 1 + [c[0] for c in checks].index(kind)
            if refused:
                raise self._deny(checks[refused - 1][0], ctx)
            self._add(record, fields)
        finally:
            self._pending -= 1
            self._admitting -= 1
        return self._releaser(record, fields, sent=True)

    def _releaser(self, record: ConnectionRecord, fields: list[str], sent: bool = True) -> Release:
        """The release of ``record``. ``sent``: its admission went to Redis, which may hold it
        whatever this process thinks of Redis now (another batch's timeout sets ``redis_ok`` to
        False for all): it is always released there. Only a record counted here alone while
        Redis was known down skips Redis then (the heartbeat's rewrite covers it)."""
        released = False

        async def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._remove(record, fields)
            if not self.redis_ok and not sent:
                self._dirty = True
                return
            self._pending += 1
            try:
                await self._run(["r", record.id, str(len(fields)), *fields])
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

    async def leave(self) -> None:
        """The process is shutting down cleanly: remove its node, its counters and its records
        from Redis in one script (``lua/leave.lua``), so the cluster-wide counts and the limits
        per user, IP and tenant drop its connections now, not ``REGISTRY_TTL`` after its last
        heartbeat. A release that reaches Redis after it changes nothing (``batch.lua`` only
        uncounts a record that is there); a failure is logged and left to the TTL."""
        if self._client is None or self._loop is not asyncio.get_running_loop():
            return  # never reached Redis on this loop: nothing of it there
        self.left = True
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        try:
            await self._call("leave", self._keys, [self.process])
        except Exception as exc:
            self._failed("leave", exc)

    async def close(self) -> None:
        """Stop the heartbeat and close the Redis client."""
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._client is not None:
            await close_client(self._client)
            self._client = None


def safe_url(url: str) -> str:
    """The URL without its password (never log credentials)."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
