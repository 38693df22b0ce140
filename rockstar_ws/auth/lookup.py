"""The user lookup's thread: one thread hop per batch of handshakes, one persistent connection.

Channels' ``database_sync_to_async`` runs each call on the thread pool with Django's
``close_old_connections()`` before and after it: with Django's default ``CONN_MAX_AGE = 0`` that
opens and closes a database connection per authenticated handshake, which cost more than the
query itself. Here:

* :data:`lookup_executor` is one dedicated thread; its Django connections are its own (Django's
  connections are thread-local) and persist between batches for ``AUTH_DB_CONN_MAX_AGE``
  seconds, with Django's own health handling (:func:`run_with_connections`).
* :class:`Coalescer` gathers the lookups that arrive while the thread is busy (or in the same
  event-loop iteration) into one call, so concurrent handshakes share one hop and one query.

The connection never holds a transaction between batches: the thread runs in autocommit, a batch
is a plain read, and a connection found inside a transaction or with autocommit off is closed
before the next batch. Each query therefore reads what other processes committed (a user
deactivated, a token blacklisted) as of that query.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from django.db import DatabaseError, connections
from django.db.models import Field, QuerySet

from ..conf import ws_settings

__all__ = ["Coalescer", "CompiledIn", "lookup_executor", "run_with_connections"]

K = TypeVar("K")
R = TypeVar("R")

#: The one thread of the user lookups of this process (every loop and manager shares it).
lookup_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rockstar-ws-auth")

#: A batch never holds more lookups than this (one ``IN (...)`` list); the rest waits for the next.
MAX_BATCH = 64


def _prepare(alias: str) -> bool:
    """Before a batch: Django's ``close_if_unusable_or_obsolete`` on this thread's connection
    (errors seen: closed unless it still answers; past its age: closed), plus a close when it is
    inside a transaction or not in autocommit. True when a connection is already open."""
    conn = connections[alias]
    if conn.connection is None:
        return False
    if conn.in_atomic_block or not conn.get_autocommit():
        conn.close()
        return False
    conn.close_if_unusable_or_obsolete()
    return conn.connection is not None


def _after(alias: str, was_open: bool) -> None:
    """After a batch: a connection opened by it gets AUTH_DB_CONN_MAX_AGE instead of the
    database's CONN_MAX_AGE (0, Django's default, would close it at once); 0 closes it now."""
    conn = connections[alias]
    if conn.connection is None:
        return
    age = float(ws_settings.AUTH_DB_CONN_MAX_AGE)
    if age <= 0:
        conn.close()
    elif not was_open:
        conn.close_at = time.monotonic() + age


def run_with_connections(aliases: Iterable[str], fn: Callable[[], R]) -> R:
    """Run ``fn`` (on the lookup thread) with healthy persistent connections to ``aliases``.

    A :class:`DatabaseError` on a connection that was already open (the server restarted, an
    idle connection was cut) closes the connections and runs ``fn`` once more on new ones; any
    other failure, or a second one, closes them and propagates (the handshake gets a 500).
    """
    names = list(dict.fromkeys(aliases))
    reused = [_prepare(a) for a in names]
    try:
        result = fn()
    except DatabaseError:
        for a in names:
            connections[a].close()
        if not any(reused):
            raise
        reused = [False] * len(names)
        try:
            result = fn()
        except BaseException:
            for a in names:
                connections[a].close()
            raise
    except BaseException:
        for a in names:
            connections[a].close()
        raise
    for a, was_open in zip(names, reused, strict=True):
        _after(a, was_open)
    return result


class CompiledIn:
    """A ``filter(<field>__in=values)`` query whose SQL Django compiles once per number of values.

    Building and compiling the queryset cost about three times what SQLite takes to run the
    query. ``build(values)`` makes the queryset (Django's ORM: the default manager's filters,
    the model's columns); the first call of a size compiles it, later calls of that size run the
    same SQL with the new values, prepared for the database by ``field`` as Django's ``__in``
    lookup prepares them, and the rows go through the compiler's own converters (dates, booleans)
    and ``Model.from_db`` as in ``QuerySet.__iter__``. A shape whose compiled parameters are
    not exactly those values (a manager filter with its own parameters), or that selects more
    than one model's plain columns, is never cached: it runs through the ORM each time. The
    compiled queries belong to the thread that compiled them (each has that thread's connection).
    """

    def __init__(self, build: Callable[[list[Any]], QuerySet[Any, Any]], field: Field[Any, Any],
                 flat: bool = False) -> None:
        self.build = build
        self.field = field
        self.flat = flat
        self._local = threading.local()

    def _prepped(self, values: Sequence[Any], connection: Any) -> list[Any]:
        field = self.field
        return [field.get_db_prep_value(field.get_prep_value(v), connection, prepared=True) for v in values]

    def run(self, alias: str, values: Sequence[Any]) -> list[Any]:
        """Model instances (or, with ``flat``, the one selected column) for distinct ``values``."""
        if not values:
            return []
        cache: dict[tuple[str, int], Any] = self._local.__dict__.setdefault("shapes", {})
        key = (alias, len(values))
        shape = cache.get(key)
        connection = connections[alias]
        if shape is None:
            qs = self.build(list(values))
            compiler = qs.query.get_compiler(alias)
            sql, params = compiler.as_sql()
            info = compiler.klass_info
            plain = (info is not None and not info.get("related_klass_infos")
                     and not compiler.annotation_col_map) if not self.flat else compiler.col_count == 1
            if not plain or list(params) != self._prepped(values, connection):
                cache[key] = False
                return list(qs)
            if self.flat:
                cache[key] = shape = (sql, compiler, [], 0, 1)
            else:
                assert info is not None
                first, last = info["select_fields"][0], info["select_fields"][-1] + 1
                attnames = [col[0].target.attname for col in compiler.select[first:last]]
                cache[key] = shape = (sql, compiler, attnames, first, last)
        elif shape is False:
            return list(self.build(list(values)))
        sql, compiler, names, start, end = shape
        with connection.cursor() as cursor:
            cursor.execute(sql, self._prepped(values, connection))
            rows = cursor.fetchall()
        converted = compiler.results_iter(results=[rows])
        if self.flat:
            return [row[0] for row in converted]
        model = compiler.klass_info["model"]
        return [model.from_db(alias, names, row[start:end]) for row in converted]


class Coalescer(Generic[K, R]):
    """A small DataLoader: ``await load(key)`` from any number of coroutines of one loop becomes
    one ``batch(keys) -> results`` call on :data:`lookup_executor` per batch.

    A batch is sent at the end of the loop iteration in which its first key arrived, or, while
    a batch is on the thread, as soon as that batch returns (the keys that arrived meanwhile
    form the next one). ``batch`` returns one result per key, in order. An exception of
    ``batch`` reaches every waiter of that batch. A waiter that is cancelled (its client left)
    is skipped; the others still get their answer.
    """

    def __init__(self, batch: Callable[[Sequence[K]], Sequence[R]]) -> None:
        self._batch = batch
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue[K, R]] = (
            weakref.WeakKeyDictionary())

    async def load(self, key: K) -> R:
        """The result of ``batch`` for ``key``, computed together with the keys of other waiters."""
        loop = asyncio.get_running_loop()
        queue = self._loops.get(loop)
        if queue is None:
            queue = self._loops[loop] = _LoopQueue(loop, self._batch)
        return await queue.add(loop, key)


class _LoopQueue(Generic[K, R]):
    """The waiting lookups of one event loop (held weakly: the coalescer's map is keyed by it)."""

    __slots__ = ("loop", "batch", "pending", "busy", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop, batch: Callable[[Sequence[K]], Sequence[R]]) -> None:
        self.loop = weakref.ref(loop)
        self.batch = batch
        self.pending: list[tuple[K, asyncio.Future[R]]] = []
        self.busy = False
        self.scheduled = False

    def add(self, loop: asyncio.AbstractEventLoop, key: K) -> asyncio.Future[R]:
        future: asyncio.Future[R] = loop.create_future()
        self.pending.append((key, future))
        if not self.busy and not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        self.scheduled = False
        if self.busy:
            return
        batch = [(k, f) for k, f in self.pending[:MAX_BATCH] if not f.done()]
        del self.pending[:MAX_BATCH]
        if not batch:
            if self.pending:
                self._send()
            return
        self.busy = True
        keys = [k for k, _ in batch]
        try:
            done = lookup_executor.submit(self.batch, keys)
        except RuntimeError as exc:  # the executor is shut down (interpreter exit)
            self._finish(batch, None, exc)
            return
        done.add_done_callback(lambda f: self._from_thread(batch, f))

    def _from_thread(self, batch: list[tuple[K, asyncio.Future[R]]], done: concurrent.futures.Future[Any]) -> None:
        exc = done.exception()
        loop = self.loop()
        if loop is None:  # the loop is gone: nobody waits any more
            return
        try:
            loop.call_soon_threadsafe(self._finish, batch, None if exc else done.result(), exc)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _finish(self, batch: list[tuple[K, asyncio.Future[R]]], results: Sequence[R] | None,
                exc: BaseException | None) -> None:
        self.busy = False
        if exc is None and (results is None or len(results) != len(batch)):
            exc = RuntimeError(f"the lookup returned {None if results is None else len(results)} "
                               f"results for {len(batch)} keys")
        for i, (_key, future) in enumerate(batch):
            if future.done():
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                assert results is not None
                future.set_result(results[i])
        if self.pending:
            self._send()
