"""The group hub: one per server and process; local members, the layer publisher and receiver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..conf import ws_settings
from ..core.backoff import Backoff
from ..core.errors import ConnectionClosed
from ..core.messages import CloseCode
from ..core.outage import outage
from ..core.wakeup import Wakeup
from ..layers import crosses_processes
from ..limits.slow import close_slow_client
from .encoding import MESSAGE_TYPE, Prepared, from_payload, payload, size, ws_message
from .names import BroadcastError, layer_group_name, validate_group_name

if TYPE_CHECKING:
    from ..core.connection import WebSocketConnection
    from ..engine.server import WebSocketServer

__all__ = ["GroupHub", "counts_backend", "read_counts"]

logger = logging.getLogger("rockstar_ws.groups")

_MAX_BATCH = 256  # messages of one group in one layer message
#: broadcast_many() yields to the loop after this many messages (one write per client per run of them).
BROADCAST_MANY_YIELD_EVERY = 32
_REDIS_SLOTS = 8  # concurrent Redis operations of one hub (keeps the pool small under bursts)
# Layer retries wait with core.backoff.Backoff: its 2 s cap is the rejoin window after Redis comes back
# (docs/broadcast.md).


def counts_backend(layer: Any) -> bool:
    """True when the layer is channels-redis (or alike): counts and pruning go to its Redis."""
    return all(hasattr(layer, a) for a in ("connection", "consistent_hash", "prefix", "_group_key"))


class _Member:
    """One connection's delivery state: direct (daphne) or a bounded queue with a writer task."""

    __slots__ = ("conn", "send", "bridge", "direct", "queue", "queued_bytes", "sending_since", "waiter",
                 "writer", "overflowing", "dropped")

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn
        self.send = conn.send_raw
        self.bridge = conn.transport
        # daphne's send never waits: write directly (a frame prepared once for all members, straight
        # to the socket when Twisted holds nothing for it: DaphneBridge.write_frame) and watch its
        # buffer instead of queueing. None: a queue and a writer task.
        self.direct: Callable[[Any, int], int] | None = self.bridge.frame_writer()
        self.queue: deque[dict[str, Any]] = deque()
        self.queued_bytes = 0
        #: monotonic time the writer's current send started (0: not sending).
        self.sending_since = 0.0
        self.waiter = Wakeup()
        self.writer: asyncio.Task[None] | None = None
        self.overflowing = False
        self.dropped = 0


class GroupHub:
    """The groups of one ``WebSocketServer`` in one process, bound to the event loop that serves it.

    Created by :func:`hub_for` when the first connection joins a group; nothing runs before.
    """

    def __init__(self, server: WebSocketServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        layer = server.channel_layer
        #: The channel layer used across processes, or None (in-memory layer or none: one process).
        self.layer: Any = layer if crosses_processes(layer) else None
        self._counts = self.layer is not None and counts_backend(self.layer)
        #: group -> its local members, in join order (dicts keep order; values unused).
        self.groups: dict[str, dict[_Member, None]] = {}
        self._members: dict[WebSocketConnection, _Member] = {}
        self.node_channel: str | None = None
        self._node_ready: asyncio.Future[None] | None = None
        self._in_layer: set[str] = set()
        self._locks: dict[str, list[Any]] = {}
        self._outbox: deque[tuple[str, list[Any], asyncio.Future[None] | None]] = deque()
        self._outbox_waiter = Wakeup()
        self._dirty_counts: set[str] = set()
        self._wake = asyncio.Event()
        self._resync = False
        self._slots = asyncio.Semaphore(_REDIS_SLOTS)
        self._tasks: list[asyncio.Task[None]] = []
        self._failing_since: float | None = None
        #: pub/sub hook (rockstar_ws.pubsub.service): group -> callback given each message delivered to it.
        self.taps: dict[str, Callable[[dict[str, Any]], None]] = {}
        #: Counters (process-local): delivered writes, dropped and slow-closed members, layer traffic.
        self.stats: dict[str, int] = {
            "delivered": 0, "dropped": 0, "slow_closed": 0, "published": 0, "publish_failed": 0,
            "received": 0, "layer_errors": 0,
        }

    # -- settings ----------------------------------------------------------------------------
    @staticmethod
    def _interval() -> float:
        return float(ws_settings.GROUP_REFRESH_INTERVAL)

    # -- membership --------------------------------------------------------------------------
    async def join(self, conn: WebSocketConnection, group: str) -> None:
        """Add ``conn`` to ``group``. Local broadcasts reach it at once; messages from other
        processes once the process's node channel is in the layer group (awaited here)."""
        validate_group_name(group)
        lg = layer_group_name(self.server.name, group)
        if not conn.is_open:
            raise ConnectionClosed(conn.close_code or CloseCode.NO_STATUS, conn.close_reason)
        if group in conn.groups:
            return
        member = self._members.get(conn)
        if member is None:
            member = self._members[conn] = _Member(conn)
            conn.on_close(self._connection_closed)
        conn.groups.add(group)
        self.groups.setdefault(group, {})[member] = None
        self._count_changed(group)
        if self.layer is not None:
            await self._start_node()
            await self._sync_group(group, lg)

    async def leave(self, conn: WebSocketConnection, group: str) -> None:
        """Remove ``conn`` from ``group`` (no-op when it is not a member)."""
        validate_group_name(group)
        if group not in conn.groups:
            return
        self._drop_membership(conn, group)
        if self.layer is not None and self.node_channel is not None:
            await self._sync_group(group, layer_group_name(self.server.name, group))

    def _drop_membership(self, conn: WebSocketConnection, group: str) -> None:
        conn.groups.discard(group)
        member = self._members.get(conn)
        members = self.groups.get(group)
        if members is not None and member is not None:
            members.pop(member, None)
            if not members:
                del self.groups[group]
        self._count_changed(group)

    def _connection_closed(self, conn: WebSocketConnection) -> None:
        """on-close callback: drop every membership of a connection that ended."""
        groups = list(conn.groups)
        for group in groups:
            self._drop_membership(conn, group)
        member = self._members.pop(conn, None)
        if member is not None:
            member.queue.clear()
            member.queued_bytes = 0
            self._wake_writer(member)
        if self.layer is not None and self.node_channel is not None:
            for group in groups:
                if group not in self.groups:
                    self._spawn(self._sync_group(group, layer_group_name(self.server.name, group)))

    # -- pub/sub hook: a tap is one process-wide receiver of a group, kept in the layer like members
    async def add_tap(self, group: str, tap: Callable[[dict[str, Any]], None]) -> None:
        """Give ``tap`` every message delivered to ``group`` in this process (once per message)."""
        self.taps[group] = tap
        if self.layer is not None:
            await self._start_node()
            await self._sync_group(group, layer_group_name(self.server.name, group))

    async def remove_tap(self, group: str) -> None:
        """Stop tapping ``group``."""
        if self.taps.pop(group, None) is not None and self.layer is not None and self.node_channel is not None:
            await self._sync_group(group, layer_group_name(self.server.name, group))

    def local_size(self, group: str) -> int:
        """Members of ``group`` in this process."""
        members = self.groups.get(group)
        return len(members) if members else 0

    # -- broadcast ---------------------------------------------------------------------------
    async def broadcast(self, group: str, message_type: int, data: str | bytes,
                        exclude: Iterable[WebSocketConnection] | WebSocketConnection | None = None,
                        *, strict: bool = False) -> int:
        """Deliver to local members now and to other processes through the layer.

        Returns the number of local members written to. Layer trouble is logged at ERROR
        (``strict=True``: awaited and raised as :class:`BroadcastError`).
        """
        validate_group_name(group)
        msg = ws_message(message_type, data)
        delivered = await self._deliver(group, msg, _exclusions(exclude))
        done = None
        if self.layer is not None:
            if self.node_channel is None:
                await self._start_node()
            done = self.loop.create_future() if strict else None
            self._publish(group, payload(msg), done)
        if done is not None:
            await done
        else:
            # Let the server flush sockets between broadcasts: a handler broadcasting in a tight
            # loop would otherwise pile every message into daphne's buffers before any is sent.
            await asyncio.sleep(0)
        return delivered

    async def broadcast_many(self, group: str, message_type: int, items: Sequence[str | bytes]) -> list[int]:
        """:meth:`broadcast` each of ``items`` in order, yielding to the loop once per
        ``BROADCAST_MANY_YIELD_EVERY`` messages instead of once per message.

        Returns the local members written to, per message. Messages written back to back reach
        each client's transport together, so the server flushes them in one write per client
        instead of one per message (pub/sub fans a batch of appended publications out this way).
        """
        validate_group_name(group)
        out: list[int] = []
        for i, data in enumerate(items):
            msg = ws_message(message_type, data)
            out.append(await self._deliver(group, msg, None))
            if self.layer is not None:
                if self.node_channel is None:
                    await self._start_node()
                self._publish(group, payload(msg), None)
            if (i + 1) % BROADCAST_MANY_YIELD_EVERY == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0)  # as broadcast(): let the server flush sockets
        return out

    async def _deliver(self, group: str, msg: dict[str, Any], exclude: frozenset[Any] | None) -> int:
        tap = self.taps.get(group)  # pub/sub hook
        if tap is not None:
            tap(msg)
        members = self.groups.get(group)
        if not members:
            return 0
        count = 0
        limit = ws_settings.GROUP_MAX_BUFFERED_BYTES
        qsize = ws_settings.GROUP_QUEUE_SIZE
        write_timeout = float(ws_settings.WRITE_TIMEOUT)
        now = time.monotonic
        prepared: Any = None
        for member in tuple(members):
            conn = member.conn
            if not conn.is_open or (exclude and conn in exclude):
                continue
            write = member.direct
            if write is not None:
                if prepared is None:
                    prepared = Prepared(msg).frame()
                try:
                    held = write(prepared, limit)
                except Exception:  # the transport went away mid-write; its close follows
                    continue
                if held:
                    if held > 0:
                        self._overflow(member, f"{held} bytes buffered")
                    continue
            else:
                if len(member.queue) >= qsize:
                    self._overflow(member, f"{len(member.queue)} messages queued")
                    continue
                if limit:
                    held = member.queued_bytes + member.bridge.buffered_bytes()
                    if held > limit:
                        self._overflow(member, f"{held} bytes queued")
                        continue
                if write_timeout and member.sending_since and now() - member.sending_since > write_timeout:
                    self._overflow(member, f"a write waited {write_timeout:g}s")
                    continue
                member.queue.append(msg)
                member.queued_bytes += size(msg)
                if member.writer is None:
                    member.writer = self.loop.create_task(self._write_loop(member))
                else:
                    self._wake_writer(member)
            if member.overflowing:
                member.overflowing = False
                logger.info("group member %s reads again (%d messages were dropped)", conn, member.dropped)
            count += 1
        self.stats["delivered"] += count
        return count

    def _wake_writer(self, member: _Member) -> None:
        member.waiter.notify()

    async def _write_loop(self, member: _Member) -> None:
        conn, queue, send = member.conn, member.queue, member.send
        try:
            while conn.is_open:
                if not queue:
                    await member.waiter.wait()
                    continue
                msg = queue.popleft()
                member.queued_bytes -= size(msg)
                member.sending_since = time.monotonic()
                try:
                    await send(msg)
                except Exception as exc:  # the client is gone; its close follows
                    logger.debug("writing a broadcast to %s failed: %r", conn, exc)
                    return
                finally:
                    member.sending_since = 0.0
        finally:
            queue.clear()
            member.queued_bytes = 0
            member.writer = None

    def _overflow(self, member: _Member, why: str) -> None:
        conn = member.conn
        if ws_settings.GROUP_OVERFLOW == "drop":
            member.dropped += 1
            self.stats["dropped"] += 1
            if not member.overflowing:
                member.overflowing = True
                logger.warning("group member %s is not reading (%s): dropping its broadcasts", conn, why)
            return
        # "close": stop writing to it now, tell it 1013 (try again later).
        self.stats["slow_closed"] += 1
        logger.warning("group member %s is not reading (%s): closing it with 1013", conn, why)
        member.queue.clear()
        member.queued_bytes = 0
        if member.writer is not None:  # its send may wait forever on a client that does not read
            member.writer.cancel()
        sending = close_slow_client(conn, "too slow")  # closed now: runs _connection_closed
        if sending is not None:
            self._spawn(sending)

    # -- the layer: node channel, publisher, receiver, upkeep ------------------------------
    async def _start_node(self) -> None:
        if self._node_ready is None:
            self._node_ready = self.loop.create_future()
            try:
                self.node_channel = await self.layer.new_channel()
            except BaseException as exc:
                self._node_ready.set_exception(exc)
                self._node_ready = None
                raise
            self._tasks = [self.loop.create_task(coro) for coro in
                           (self._receive_loop(), self._publish_loop(), self._upkeep_loop())]
            self._node_ready.set_result(None)
        elif not self._node_ready.done():
            await asyncio.shield(self._node_ready)

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    @contextlib.asynccontextmanager
    async def _group_lock(self, group: str) -> AsyncIterator[None]:
        """One lock per group for layer membership changes (dropped when nobody holds or waits)."""
        entry = self._locks.get(group)
        if entry is None:
            entry = self._locks[group] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[group]

    async def _sync_group(self, group: str, lg: str) -> None:
        """Make the node channel's layer membership match the local members."""
        async with self._group_lock(group):
            want = group in self.groups or group in self.taps  # pub/sub hook: taps
            if want == (group in self._in_layer):
                return
            try:
                async with self._slots:
                    if want:
                        await self.layer.group_add(lg, self.node_channel)
                        self._in_layer.add(group)
                    else:
                        await self.layer.group_discard(lg, self.node_channel)
                        self._in_layer.discard(group)
            except Exception as exc:
                self._layer_failed(f"{'joining' if want else 'leaving'} layer group {lg}", exc)

    def _publish(self, group: str, payload: list[Any], done: asyncio.Future[None] | None) -> None:
        if len(self._outbox) >= ws_settings.GROUP_PUBLISH_QUEUE_SIZE:
            self.stats["publish_failed"] += 1
            if outage.active:  # counted, and reported once on recovery
                outage.count("broadcasts stayed in this process")
            else:
                logger.error("broadcast to group %r did not reach other processes: %d broadcasts are already "
                         "waiting for the channel layer (GROUP_PUBLISH_QUEUE_SIZE)", group, len(self._outbox))
            if done is not None:
                done.set_exception(BroadcastError("the channel layer is not keeping up; broadcast not sent"))
            return
        self._outbox.append((group, payload, done))
        self._outbox_waiter.notify()

    async def _publish_loop(self) -> None:
        outbox = self._outbox
        while True:
            if not outbox:
                await self._outbox_waiter.wait()
                continue
            group, payload, done = outbox.popleft()
            items, waiters = [payload], [done]
            # Messages of the same group queued behind it travel in the same layer message.
            while outbox and outbox[0][0] == group and len(items) < _MAX_BATCH:
                _, p, d = outbox.popleft()
                items.append(p)
                waiters.append(d)
            lg = layer_group_name(self.server.name, group)
            message = {"type": MESSAGE_TYPE, "origin": self.node_channel, "group": group, "items": items}
            error: Exception | None = None
            try:
                async with self._slots:
                    await self.layer.group_send(lg, message)
                self.stats["published"] += len(items)
            except Exception as exc:
                error = exc
                self.stats["publish_failed"] += len(items)
                outage.count("broadcasts stayed in this process", len(items))
                self._layer_failed(f"{len(items)} broadcast(s) to group {group!r} did not reach other processes", exc)
            for d in waiters:
                if d is not None and not d.done():
                    if error is None:
                        d.set_result(None)
                    else:
                        d.set_exception(BroadcastError(f"broadcast to {group!r} not sent: {error!r}"))

    async def _receive_loop(self) -> None:
        backoff = Backoff()
        while True:
            try:
                message = await self.layer.receive(self.node_channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._layer_failed("receiving broadcasts from other processes", exc)
                await backoff.sleep()
                continue
            backoff.reset()
            self._layer_ok()
            if message.get("type") != MESSAGE_TYPE or message.get("origin") == self.node_channel:
                continue  # our own broadcast: its local members have it already
            group = message.get("group")
            try:
                for item in message.get("items") or ():
                    self.stats["received"] += 1
                    await self._deliver(group, from_payload(item), None)
                    await asyncio.sleep(0)
            except Exception:
                logger.exception("delivering a broadcast from another process to group %r failed", group)

    async def _upkeep_loop(self) -> None:
        """Count updates (coalesced), periodic re-adds and pruning, and recovery after errors."""
        last_refresh = time.monotonic()
        backoff = Backoff()
        just_failed = False
        while True:
            if just_failed:
                # The backoff was slept already; waiting again (others' failures set _wake) would
                # stretch the rejoin window after Redis comes back to several times the cap.
                just_failed = False
            else:
                timeout = max(0.0, self._interval() - (time.monotonic() - last_refresh))
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                    await asyncio.sleep(0.05)  # let a burst of joins and leaves coalesce
                except TimeoutError:
                    pass
            self._wake.clear()
            try:
                if self._resync or time.monotonic() - last_refresh >= self._interval():
                    await self._refresh()
                    last_refresh = time.monotonic()
                    if self._resync:
                        logger.debug("channel layer reachable again: group memberships of this process re-added")
                    self._resync = False
                    self._layer_ok()
                    backoff.reset()
                elif self._dirty_counts:
                    await self._flush_counts(self._take_dirty())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._layer_failed("refreshing group memberships", exc)
                await backoff.sleep()
                just_failed = True

    async def _refresh(self) -> None:
        """Re-add every group with local members (so group_expiry or a Redis restart never drops a
        live process), leave the ones left behind, prune processes that stopped refreshing, and
        rewrite this process's counts."""
        interval = self._interval()
        for group in list(self.groups.keys() | self.taps.keys() | self._in_layer):  # pub/sub hook: taps
            lg = layer_group_name(self.server.name, group)
            async with self._group_lock(group), self._slots:
                if group not in self.groups and group not in self.taps:
                    await self.layer.group_discard(lg, self.node_channel)
                    self._in_layer.discard(group)
                    continue
                await self.layer.group_add(lg, self.node_channel)
                self._in_layer.add(group)
                if self._counts:
                    key = self.layer._group_key(lg)
                    conn = self.layer.connection(self.layer.consistent_hash(lg))
                    await conn.zremrangebyscore(key, 0, time.time() - 3 * interval)
        self._take_dirty()
        await self._flush_counts(set(self.groups) | self._in_layer)

    def _take_dirty(self) -> set[str]:
        dirty, self._dirty_counts = self._dirty_counts, set()
        return dirty

    def _count_key(self, lg: str) -> str:
        return f"{self.layer.prefix}:rockstar:count:{lg}"

    def _count_changed(self, group: str) -> None:
        if self._counts:
            self._dirty_counts.add(group)
            self._wake.set()

    async def _flush_counts(self, groups: set[str]) -> None:
        if not self._counts or not groups or self.node_channel is None:
            return
        ttl = int(3 * self._interval()) + 1
        deadline = time.time() + ttl
        try:
            async with self._slots:
                for group in groups:
                    lg = layer_group_name(self.server.name, group)
                    key = self._count_key(lg)
                    pipe = self.layer.connection(self.layer.consistent_hash(lg)).pipeline(transaction=False)
                    n = self.local_size(group)
                    if n:
                        pipe.hset(key, self.node_channel, f"{n} {deadline:.0f}")
                        pipe.expire(key, ttl)
                    else:
                        pipe.hdel(key, self.node_channel)
                    await pipe.execute()
        except Exception:
            self._dirty_counts |= groups
            raise

    async def cluster_size(self, group: str, *, strict: bool = False) -> int:
        """Members of ``group`` in every process (this one's live count plus the others' last
        reports). When the layer cannot be read: this process's count and a warning in the log
        (``strict=True``: :class:`BroadcastError`)."""
        validate_group_name(group)
        local = self.local_size(group)
        if not self._counts:
            return local
        try:
            others = await read_counts(self.layer, layer_group_name(self.server.name, group),
                                       skip=self.node_channel)
        except BroadcastError as exc:
            if strict:
                raise
            outage.failed("channel layer", "reading member counts", exc, holds=False, log=logger)
            return local
        return local + others

    # -- health ----------------------------------------------------------------------------
    def _layer_failed(self, what: str, exc: Exception) -> None:
        self.stats["layer_errors"] += 1
        self._resync = True
        self._wake.set()
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        outage.failed("channel layer", what, exc, log=logger)

    def _layer_ok(self) -> None:
        if self._failing_since is not None:
            self._failing_since = None
            outage.recovered("channel layer", log=logger)


def _exclusions(exclude: Any) -> frozenset[Any] | None:
    from ..core.connection import SyncConnection, WebSocketConnection

    if exclude is None:
        return None
    if isinstance(exclude, (WebSocketConnection, SyncConnection)):
        exclude = (exclude,)
    return frozenset(c.async_connection if isinstance(c, SyncConnection) else c for c in exclude)


async def read_counts(layer: Any, lg: str, *, skip: str | None = None) -> int:
    """Sum of the fresh per-process member counts of layer group ``lg`` stored in Redis."""
    key = f"{layer.prefix}:rockstar:count:{lg}"
    try:
        raw = await layer.connection(layer.consistent_hash(lg)).hgetall(key)
    except Exception as exc:
        raise BroadcastError(f"cannot read member counts of {lg!r} from the channel layer: {exc!r}") from exc
    now = time.time()
    total = 0
    for node, value in raw.items():
        node = node.decode() if isinstance(node, bytes) else node
        if node == skip:
            continue
        count, _, deadline = (value.decode() if isinstance(value, bytes) else value).partition(" ")
        if float(deadline or 0) >= now:
            total += int(count)
    return total
