"""The pub/sub side of one ``WebSocketServer``: publish (history, then fan-out) and the subscriptions.

How a publication travels:

1. :meth:`PubSub.publish` appends the JSON data to the stream's history (when a ``PUBSUB_HISTORY``
   pattern fits the group), which gives it its offset and epoch, and builds the ``pub`` push
   text once: ``{"type":"pub","group":G,"offset":N,"epoch":E,"data":...}``.
2. The text travels through the existing group hub (rockstar_ws/groups/hub.py) to the hub group of
   the stream, ``ps.<hash of the namespaced stream>``: local delivery at once, one layer message
   per other process.
3. In every process the hub hands each message of a stream's hub group to this service's *tap*
   (once per process, whatever the number of subscribers), which reads offset and epoch from
   the push's fixed prefix (no JSON parse of the data) and queues it for each subscription.
4. Each connection has a :class:`Session`: one task that writes everything the connection
   receives (replies, catch-ups, live publications) in order, each subscription passing its
   live publications through its own :class:`~rockstar_ws.pubsub.recovery.LiveMerge`.

Streams are ``namespaced(group, tenant)``: the tenant is part of the stream's name and of its
hub group's hash, so nothing one tenant's connection publishes or subscribes reaches another's.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rockstar_ws.groups.encoding import Prepared
from rockstar_ws.pubsub.config import HistoryPolicy, HistoryRule
from rockstar_ws.pubsub.history import HistoryStore, MemoryHistoryStore, Position, Publication, Recovery
from rockstar_ws.pubsub.permissions import namespaced, validate_group
from rockstar_ws.pubsub.recovery import CatchUp, LiveMerge, Unrecoverable

if TYPE_CHECKING:
    from rockstar_ws.core.connection import WebSocketConnection
    from rockstar_ws.engine.server import WebSocketServer

__all__ = ["Delivered", "PubSub", "PublishResult", "Session", "Subscription", "pubsub_for"]

logger = logging.getLogger("rockstar_ws.pubsub")

# The push prefix publish() writes; group names cannot contain '"' (validate_group), so the
# fixed layout is read back with one regex instead of parsing the data.
_PUSH_RE = re.compile(r'\{"type":"pub","group":"[^"]*","offset":(\d+),"epoch":"([^"]*)","data":')
#: Live items one connection may have queued; past it they are dropped and the merge refills the gap.
SESSION_QUEUE_LIMIT = 10_000


def push_text(group: str, data_json: str, position: Position | None) -> str:
    """The ``pub`` push of docs/protocol.md, built by concatenation (``data_json`` is JSON already)."""
    if position is None:
        return f'{{"type":"pub","group":"{group}","data":{data_json}}}'
    return (f'{{"type":"pub","group":"{group}","offset":{position.offset},"epoch":"{position.epoch}",'
            f'"data":{data_json}}}')


def hub_group(stream: str) -> str:
    """The group-hub name carrying a namespaced stream (hub names allow only ``[A-Za-z0-9_.-]``)."""
    return "ps." + hashlib.blake2b(stream.encode(), digest_size=20).hexdigest()


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What :meth:`PubSub.publish` did: the publication's position (None without history) and
    how many local subscriptions' sessions it was queued for."""

    position: Position | None
    delivered: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """A publication as a handler's ``on_publication`` callback gets it (data parsed)."""

    group: str
    data: Any
    offset: int | None
    epoch: str | None


class _PushStore(HistoryStore):
    """A store view whose publications carry the whole push text, so catch-up, refills and live
    publications all hold the same kind of payload inside the merge."""

    def __init__(self, store: HistoryStore, group: str) -> None:
        self.store = store
        self.group = group

    async def append(self, group: str, payload: Any, *, size: int, ttl: float) -> Position:
        raise NotImplementedError  # never called: the merge only reads

    async def since(self, group: str, epoch: str, offset: int, *, limit: int | None = None) -> Recovery:
        r = await self.store.since(group, epoch, offset, limit=limit)
        pubs = [Publication(p.offset, p.epoch, push_text(self.group, _str(p.data), Position(p.offset, p.epoch)))
                for p in r.publications]
        return Recovery(pubs, r.recovered, r.position)

    async def position(self, group: str) -> Position:
        return await self.store.position(group)


def _str(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data


class Subscription:
    """One group subscribed by one connection (from the protocol or a handler's ``conn.subscribe``)."""

    __slots__ = ("session", "group", "stream", "hub_group", "rule", "merge", "active", "on_publication", "on_end")

    def __init__(self, session: Session, group: str, stream: str, rule: HistoryRule | None,
                 merge: LiveMerge | None,
                 on_publication: Callable[[Delivered], Awaitable[None]] | None = None) -> None:
        self.session = session
        self.group = group
        self.stream = stream
        self.hub_group = hub_group(stream)
        self.rule = rule
        self.merge = merge
        self.active = True
        self.on_publication = on_publication
        #: Coroutine functions run when the subscription ends (presence leaves).
        self.on_end: list[Callable[[], Awaitable[None]]] = []

    async def deliver(self, text: str, pub: Publication | None = None, frame: Prepared | None = None) -> None:
        if self.on_publication is None:
            session = self.session
            if frame is not None and session.direct is not None and (session.ready is None or session.ready()):
                # A live publication on daphne, which the guard has nothing to watch for: the frame
                # prepared once for every subscriber goes to the socket (the hub's direct write).
                if session.direct(frame.frame(), 0) == 0:
                    return
            await session.conn.send_text(text)  # not open, or the guard watches: the usual path
            return
        body = json.loads(text)
        await self.on_publication(Delivered(self.group, body.get("data"), body.get("offset"), body.get("epoch")))


class Session:
    """The pub/sub state of one connection: its subscriptions and the one task that writes to it.

    Every frame the connection gets from pub/sub goes through :meth:`_run`, in order, so a
    subscription's reply and catch-up always precede its live publications.
    """

    def __init__(self, service: PubSub, conn: WebSocketConnection) -> None:
        self.service = service
        self.conn = conn
        self.subs: dict[str, Subscription] = {}
        self._queue: deque[tuple[Any, ...]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        #: Live items dropped over SESSION_QUEUE_LIMIT (refilled from history by the merge).
        self.dropped = 0
        #: daphne's direct frame write (DaphneBridge.write_frame), as group members get broadcasts;
        #: None on the other servers: every frame goes through ``conn.send_text``.
        self.direct: Callable[[Any, int], int] | None = conn.transport.frame_writer()
        guard = conn.guard
        #: The guard's "nothing to watch in this write" (None: no guard): a direct write only then.
        self.ready: Callable[[], bool] | None = guard.write_ready if guard is not None else None

    # -- the writer ----------------------------------------------------------------------
    def _put(self, item: tuple[Any, ...]) -> None:
        if self.closed:
            return
        self._queue.append(item)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def live(self, sub: Subscription, text: str, pub: Publication | None, frame: Prepared | None = None) -> bool:
        """Queue a live publication for ``sub`` (``frame``: its frame, prepared once for every
        subscriber); False when dropped (the queue is full)."""
        if len(self._queue) >= SESSION_QUEUE_LIMIT:
            self.dropped += 1
            return False
        self._put(("live", sub, text, pub, frame))
        return True

    def send(self, text: str) -> None:
        """Queue one frame (a reply) behind what is queued already."""
        self._put(("send", text))

    def call(self, job: Callable[[], Awaitable[None]]) -> None:
        """Queue a coroutine function run by the writer in order (a subscription's start)."""
        self._put(("call", job))

    async def _run(self) -> None:
        from rockstar_ws.core.errors import ConnectionClosed

        queue = self._queue
        while not self.closed:
            if not queue:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                continue
            item = queue.popleft()
            try:
                kind = item[0]
                if kind == "live":
                    await self._live(item[1], item[2], item[3], item[4])
                elif kind == "send":
                    await self.conn.send_text(item[1])
                else:
                    await item[1]()
            except ConnectionClosed:
                self.close()
                return
            except Exception:
                logger.exception("pub/sub delivery to %s failed", self.conn)

    async def _live(self, sub: Subscription, text: str, pub: Publication | None, frame: Prepared | None) -> None:
        if not sub.active:
            return
        if sub.merge is None or pub is None:
            if sub.merge is None:
                await sub.deliver(text, None, frame)
            return
        if sub.merge.advance(pub):  # the next one, in order: no lock, no list
            await sub.deliver(text, pub, frame)
            return
        try:
            out = await sub.merge.live(pub)
        except Unrecoverable as exc:
            logger.info("subscription of %s ended: %s", self.conn, exc)
            await self.end(sub, "insufficient_state", "the live stream could not continue without a hole")
            return
        for p in out:
            await sub.deliver(_str(p.data), p)

    async def end(self, sub: Subscription, code: str, message: str) -> None:
        """End a subscription from the server's side with an ``unsubscribed`` push."""
        await self.remove(sub)
        if sub.on_publication is None:
            await self.conn.send_text(json.dumps({"type": "unsubscribed", "group": sub.group, "code": code,
                                                  "message": message}, separators=(",", ":")))

    # -- subscriptions -------------------------------------------------------------------
    async def add(self, group: str, tenant_id: str | None, *,
                  on_publication: Callable[[Delivered], Awaitable[None]] | None = None) -> Subscription:
        """Join ``group``'s stream (complete when this returns: live publications are buffered)."""
        stream = namespaced(group, tenant_id)
        rule = self.service.history.rule_for(group)
        merge = None
        if rule is not None:
            merge = LiveMerge(_PushStore(self.service.store(), group), stream,
                              max_recovery=self.service.history.recovery_limit)
        sub = Subscription(self, group, stream, rule, merge, on_publication)
        self.subs[group] = sub
        try:
            await self.service.attach(sub)
        except BaseException:
            self.subs.pop(group, None)
            sub.active = False
            raise
        return sub

    async def start(self, sub: Subscription, since: Position | None) -> CatchUp | None:
        """Read the history after ``since`` (None: from now) and go live; run by the writer."""
        if sub.merge is None:
            return None
        return await sub.merge.start(since)

    async def remove(self, sub: Subscription) -> None:
        """Stop a subscription (no-op when it ended already)."""
        if not sub.active:
            return
        sub.active = False
        if self.subs.get(sub.group) is sub:
            del self.subs[sub.group]
        for job in sub.on_end:
            await job()
        await self.service.detach(sub)

    def close(self) -> None:
        """The connection ended: drop every subscription (their hub taps go when unused)."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        for sub in list(self.subs.values()):
            sub.active = False
            for job in sub.on_end:
                _spawn(job())
            self.service.detach_soon(sub)
        self.subs.clear()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()


class PubSub:
    """Publish and subscribe on one server: the history policy, the stores, the hub taps."""

    def __init__(self, server: WebSocketServer, history: HistoryPolicy | None = None) -> None:
        self.server = server
        self._history = history
        self._stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HistoryStore] = weakref.WeakKeyDictionary()
        self._memory: HistoryStore | None = None
        #: hub group -> the local subscriptions of its stream
        self.streams: dict[str, dict[Subscription, None]] = {}
        self._attaching: dict[str, asyncio.Future[None]] = {}
        self._batches: dict[tuple[asyncio.AbstractEventLoop, str], _Batch] = {}
        self._sessions: weakref.WeakKeyDictionary[WebSocketConnection, Session] = weakref.WeakKeyDictionary()
        #: The ``history=`` a pub/sub route of this server gave (rockstar_ws.pubsub.route.register).
        self.route_history: Any = None

    # -- configuration -------------------------------------------------------------------
    @property
    def history(self) -> HistoryPolicy:
        """The history policy: given to a route (``history=``), else ``ROCKSTAR_WS["PUBSUB_HISTORY"]``."""
        if self._history is None:
            from rockstar_ws.conf import ws_settings

            self._history = HistoryPolicy(ws_settings.PUBSUB_HISTORY)
        return self._history

    def set_history(self, history: HistoryPolicy) -> None:
        """Use ``history`` for every stream of this server (a route's ``history=``)."""
        self._history = history
        self._memory = None
        self._stores = weakref.WeakKeyDictionary()

    def store(self) -> HistoryStore:
        """The history store for the running event loop (a Redis client is bound to one loop; the
        in-memory store is one per process, shared by every loop)."""
        if self._memory is not None:
            return self._memory
        loop = asyncio.get_running_loop()
        store = self._stores.get(loop)
        if store is None:
            store = self.history.new_store()
            if isinstance(store, MemoryHistoryStore):
                self._memory = store
            else:
                self._stores[loop] = store
        return store

    async def close(self) -> None:
        """Close the store of the running loop (a command's loop ends with it)."""
        loop = asyncio.get_running_loop()
        store = self._stores.pop(loop, None)
        if store is not None:
            await store.close()

    # -- sessions ------------------------------------------------------------------------
    def session(self, conn: WebSocketConnection) -> Session:
        """The connection's session, created on first use and closed with the connection."""
        session = self._sessions.get(conn)
        if session is None:
            session = self._sessions[conn] = Session(self, conn)
            conn._on_close.append(lambda _c: session.close())
        return session

    # -- publish -------------------------------------------------------------------------
    async def publish(self, group: str, data: Any, *, tenant: str | None = None) -> PublishResult:
        """Publish JSON-serialisable ``data`` to ``group`` of ``tenant`` (None: the no-tenant namespace).

        Through the history when a ``PUBSUB_HISTORY`` pattern fits the group, then to every
        subscriber in every process. Raises ``ValueError`` for a bad group name or data that is
        not JSON-serialisable.
        """
        try:
            data_json = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"publication data must be JSON-serialisable: {exc}") from None
        return await self.publish_json(group, data_json, tenant=tenant)

    async def publish_json(self, group: str, data_json: str, *, tenant: str | None = None) -> PublishResult:
        """:meth:`publish` with data already encoded as one JSON text (not checked again)."""
        bad = validate_group(group)
        if bad is not None:
            raise ValueError(f"cannot publish to {group[:40]!r}: {bad.message}")
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise ValueError("tenant must be a non-empty string or None")
        stream = namespaced(group, tenant)
        rule = self.history.rule_for(group)
        from rockstar_ws import groups
        from rockstar_ws.core.messages import TextMessage

        if rule is None:
            delivered = await groups.broadcast(self.server, hub_group(stream), TextMessage,
                                               push_text(group, data_json, None))
            return PublishResult(None, delivered)
        # Publications of one stream in this process queue for one writer that appends them in
        # batches (one round trip each) and fans them out in offset order: out of order, every
        # subscriber would see a gap and read the history to fill it.
        key = (asyncio.get_running_loop(), stream)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(self, stream, group, rule)
        return await batch.add(data_json)

    # -- fan-out -------------------------------------------------------------------------
    async def attach(self, sub: Subscription) -> None:
        """Add ``sub`` to its stream; the first one of a stream in this process taps its hub group."""
        from rockstar_ws.groups import hub_for

        name = sub.hub_group
        subs = self.streams.get(name)
        if subs is None:
            subs = self.streams[name] = {}
            pending = self._attaching[name] = asyncio.get_running_loop().create_future()
            subs[sub] = None
            try:
                await hub_for(self.server).add_tap(name, functools.partial(self._tap, name))
            except BaseException as exc:
                subs.pop(sub, None)
                if not subs:
                    self.streams.pop(name, None)
                pending.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
                pending.exception()  # retrieved: later waiters re-raise it
                raise
            finally:
                self._attaching.pop(name, None)
            if not pending.done():
                pending.set_result(None)
            return
        subs[sub] = None
        attaching = self._attaching.get(name)
        if attaching is not None:  # the layer join of this stream is still under way
            await asyncio.shield(attaching)

    async def detach(self, sub: Subscription) -> None:
        """Remove ``sub``; the last one of a stream in this process un-taps the hub group."""
        subs = self.streams.get(sub.hub_group)
        if subs is None:
            return
        subs.pop(sub, None)
        if not subs and sub.hub_group not in self._attaching:
            del self.streams[sub.hub_group]
            from rockstar_ws.groups import current_hub

            hub = current_hub(self.server)
            if hub is not None:
                await hub.remove_tap(sub.hub_group)

    def detach_soon(self, sub: Subscription) -> None:
        """:meth:`detach` from a synchronous close callback."""
        subs = self.streams.get(sub.hub_group)
        if subs is None:
            return
        subs.pop(sub, None)
        if not subs:
            _spawn(self.detach(sub))

    def _tap(self, name: str, msg: dict[str, Any]) -> None:
        """Every message the hub delivers to a stream's hub group, once per process."""
        subs = self.streams.get(name)
        text = msg.get("text")
        if not subs or text is None:
            return
        m = _PUSH_RE.match(text)
        pub = Publication(int(m.group(1)), m.group(2), text) if m else None
        frame = Prepared(msg)  # framed on first use, once for every subscriber of this process
        for sub in tuple(subs):
            if sub.active:
                sub.session.live(sub, text, pub, frame)


class _Batch:
    """The publications of one stream of this process, from their append to their fan-out.

    Publications queued within one loop iteration go to the store as one batch (one
    ``append_many``: one Redis script, one round trip). Up to ``IN_FLIGHT`` batches are appended
    at once (sent in order, so Redis runs them in order: offsets rise from one batch to the
    next); one task fans each batch out when its own append has returned, in the order they were
    sent (completed ones sorted by offset), so a publication never reaches a subscriber before it
    is in the history, and this process's publications reach its subscribers in offset order.
    """

    MAX = 256
    IN_FLIGHT = 4

    def __init__(self, service: PubSub, stream: str, group: str, rule: HistoryRule) -> None:
        self.service, self.stream, self.group, self.rule = service, stream, group, rule
        self.queue: deque[tuple[str, asyncio.Future[PublishResult]]] = deque()
        #: batches sent to the store, oldest first: (their publications, the append under way)
        self.inflight: deque[tuple[list[tuple[str, asyncio.Future[PublishResult]]],
                                   asyncio.Future[list[Position]]]] = deque()
        self.task: asyncio.Task[None] | None = None
        self._flush_soon = False

    async def add(self, data_json: str) -> PublishResult:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[PublishResult] = loop.create_future()
        self.queue.append((data_json, fut))
        if not self._flush_soon:
            # Once the publications of this loop iteration are queued: they go as one batch.
            self._flush_soon = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        """Send what is queued as batches while fewer than ``IN_FLIGHT`` are under way."""
        self._flush_soon = False
        loop = asyncio.get_running_loop()
        while self.queue and len(self.inflight) < self.IN_FLIGHT:
            items = [self.queue.popleft() for _ in range(min(self.MAX, len(self.queue)))]
            try:
                store = self.service.store()
            except Exception as exc:  # no store (its configuration failed): nothing was appended
                _fail(items, exc)
                continue
            self.inflight.append((items, asyncio.ensure_future(store.append_many(
                self.stream, [d for d, _ in items], size=self.rule.size, ttl=self.rule.ttl))))
        if self.inflight and self.task is None:
            self.task = loop.create_task(self._run())
        elif not self.inflight and not self.queue and self.task is None:
            self.service._batches.pop((loop, self.stream), None)

    async def _run(self) -> None:
        from rockstar_ws import groups
        from rockstar_ws.core.messages import TextMessage

        try:
            while self.inflight:
                try:
                    await asyncio.wait([self.inflight[0][1]])
                except asyncio.CancelledError:  # the loop is closing: nobody waits for them any more
                    for items, append in self.inflight:
                        append.cancel()
                        _fail(items, RuntimeError("the server stopped before the publication was appended"))
                    self.inflight.clear()
                    raise
                # The batches whose appends are done, oldest first; the next ones go out before
                # this fan-out, so their round trip overlaps it.
                done = []
                while self.inflight and self.inflight[0][1].done():
                    done.append(self.inflight.popleft())
                self._flush()
                ready: list[tuple[list[tuple[str, asyncio.Future[PublishResult]]], list[Position]]] = []
                for items, append in done:
                    exc = append.exception()
                    if exc is not None:
                        _fail(items, exc)
                    else:
                        ready.append((items, append.result()))
                # Sent in order, Redis ran them in order; should two connections of the pool have
                # crossed, the offsets still leave in order (a late one is refilled by the merge).
                # Across an epoch change (the history was lost) the order sent is kept.
                if len({positions[0].epoch for _, positions in ready if positions}) == 1:
                    ready.sort(key=lambda r: r[1][0].offset if r[1] else 0)
                texts = [push_text(self.group, data_json, position)
                         for items, positions in ready
                         for (data_json, _), position in zip(items, positions, strict=True)]
                try:
                    # Back to back, in offset order: each subscriber's frames of the batches leave
                    # in one write instead of one per publication.
                    counts = iter(await groups.broadcast_many(self.service.server, hub_group(self.stream),
                                                              TextMessage, texts))
                except Exception as exc:
                    for items, _ in ready:
                        _fail(items, exc)
                    continue
                for items, positions in ready:
                    for (_, fut), position in zip(items, positions, strict=True):
                        delivered = next(counts)
                        if not fut.done():
                            fut.set_result(PublishResult(position, delivered))
        finally:
            self.task = None
            if not self.queue and not self.inflight and not self._flush_soon:
                self.service._batches.pop((asyncio.get_running_loop(), self.stream), None)


def _fail(items: list[tuple[str, asyncio.Future[PublishResult]]], exc: BaseException) -> None:
    for _, fut in items:
        if not fut.done():
            fut.set_exception(exc)


_background: set[asyncio.Task[Any]] = set()


def _spawn(coro: Awaitable[Any]) -> None:
    """Run clean-up started by a synchronous close callback; failures are logged."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_done)


def _done(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.warning("pub/sub clean-up failed: %r", task.exception())


#: server -> its pub/sub service (a weak map, as the group hubs: nothing is kept on the server)
_services: weakref.WeakKeyDictionary[WebSocketServer, PubSub] = weakref.WeakKeyDictionary()


def pubsub_for(server: WebSocketServer) -> PubSub:
    """The server's pub/sub service (one per server, created on first use)."""
    service = _services.get(server)
    if service is None:
        service = _services[server] = PubSub(server)
    return service


async def broadcast_hook(server: WebSocketServer, group: str, message_type: int, data: str | bytes) -> int | None:
    """``server.broadcast`` of text on a group with history: stored and fanned out to the group's
    subscribers (no-tenant namespace) as a publication whose data is the JSON the text holds, or
    the text as a JSON string when it is not JSON. None: no history for this group (or binary)."""
    service: PubSub | None = getattr(server, "_pubsub", None)
    if service is None or service.history.rule_for(group) is None:
        return None
    from rockstar_ws.core.messages import TextMessage

    if message_type != TextMessage:
        return None
    text = data.decode() if isinstance(data, bytes) else data
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        text = json.dumps(text, ensure_ascii=False)
    return (await service.publish_json(group, text)).delivered
