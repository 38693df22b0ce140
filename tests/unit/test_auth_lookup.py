"""The user lookup's thread (rockstar_ws/auth/lookup.py): batching, the persistent connection.

Real database (pytest-django's SQLite test database, shared between threads), the real
lookup thread; nothing under test is mocked. The functions handed to the coalescer are plain
functions that record what they were given.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from rockstar_ws import AuthManager
from rockstar_ws.auth import lookup
from rockstar_ws.auth.lookup import Coalescer, CompiledIn, lookup_executor, run_with_connections
from rockstar_ws.auth.tokens import access_token_for
from rockstar_ws.core.errors import Deny


async def test_lookups_of_one_loop_iteration_share_one_batch():
    batches: list[list[int]] = []
    threads: set[str] = set()

    def double(keys):
        batches.append(list(keys))
        threads.add(threading.current_thread().name)
        return [k * 2 for k in keys]

    loader = Coalescer(double)
    assert await asyncio.gather(*(loader.load(i) for i in range(10))) == [i * 2 for i in range(10)]
    assert batches == [list(range(10))]
    assert len(threads) == 1 and next(iter(threads)).startswith("rockstar-ws-auth")


async def test_lookups_arriving_while_a_batch_runs_form_the_next_batch():
    started, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def slow(keys):
        batches.append(list(keys))
        if len(batches) == 1:
            started.set()
            release.wait(30)
        return [k.upper() for k in keys]

    loader = Coalescer(slow)
    first = asyncio.ensure_future(loader.load("a"))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)  # "a" is on the thread
    later = [asyncio.ensure_future(loader.load(k)) for k in "bcd"]
    await asyncio.sleep(0)  # let them queue behind the running batch
    release.set()
    assert await first == "A"
    assert await asyncio.gather(*later) == ["B", "C", "D"]
    assert batches == [["a"], ["b", "c", "d"]]


async def test_a_batch_holds_at_most_max_batch_keys():
    sizes: list[int] = []

    def ident(keys):
        sizes.append(len(keys))
        return list(keys)

    loader = Coalescer(ident)
    n = lookup.MAX_BATCH * 2 + 3
    assert await asyncio.gather(*(loader.load(i) for i in range(n))) == list(range(n))
    assert sizes == [lookup.MAX_BATCH, lookup.MAX_BATCH, 3]


async def test_an_error_reaches_every_waiter_and_the_next_batch_still_runs():
    calls: list[list[int]] = []

    def failing_once(keys):
        calls.append(list(keys))
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return list(keys)

    loader = Coalescer(failing_once)
    results = await asyncio.gather(*(loader.load(i) for i in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [OperationalError] * 3
    assert await loader.load(7) == 7
    assert calls == [[0, 1, 2], [7]]


async def test_a_cancelled_waiter_is_skipped_and_the_others_are_answered():
    started, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def gate(keys):
        batches.append(list(keys))
        if len(batches) == 1:
            started.set()
            release.wait(30)
        return list(keys)

    loader = Coalescer(gate)
    first = asyncio.ensure_future(loader.load(0))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
    gone = asyncio.ensure_future(loader.load(1))
    kept = asyncio.ensure_future(loader.load(2))
    await asyncio.sleep(0)
    gone.cancel()  # its client left while it waited
    release.set()
    assert await first == 0 and await kept == 2
    assert gone.cancelled()
    assert batches == [[0], [2]]  # the cancelled key never reached the database


# -- the connection on the lookup thread ----------------------------------------------------------
def _on_thread(fn):
    return lookup_executor.submit(fn).result(timeout=30)


def _thread_connection():
    return connections["default"].connection


@pytest.mark.django_db(transaction=True)
def test_the_connection_persists_between_batches_and_holds_no_transaction():
    def query():
        from django.contrib.auth import get_user_model

        return get_user_model().objects.count()

    def state():
        conn = connections["default"]
        return conn.connection, conn.in_atomic_block, conn.get_autocommit()

    _on_thread(lambda: connections["default"].close())
    run = lambda: run_with_connections(["default"], query)  # noqa: E731
    _on_thread(run)
    first, atomic, autocommit = _on_thread(state)
    assert first is not None and not atomic and autocommit
    _on_thread(run)
    assert _on_thread(_thread_connection) is first  # the same connection served the second batch
    # (AUTH_DB_CONN_MAX_AGE = 0 closing it is checked through a server process in
    # tests/e2e/test_auth.py: Django never closes the in-memory test database's connections.)


@pytest.mark.django_db(transaction=True)
def test_a_database_error_on_a_reused_connection_reconnects_and_retries_once():
    attempts: list[object] = []

    def flaky():
        attempts.append(connections["default"].connection)
        if len(attempts) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        from django.contrib.auth import get_user_model

        return get_user_model().objects.count()

    _on_thread(lambda: run_with_connections(["default"], lambda: connections["default"].ensure_connection()))
    assert _on_thread(_thread_connection) is not None
    assert _on_thread(lambda: run_with_connections(["default"], flaky)) == 0  # the retry answered
    assert len(attempts) == 2 and attempts[0] is not None

    failures: list[int] = []

    def always():
        failures.append(1)
        raise OperationalError("down")
    with pytest.raises(OperationalError):
        _on_thread(lambda: run_with_connections(["default"], always))
    assert len(failures) == 2  # retried once, then the error reaches the handshakes (a 500)


@pytest.mark.django_db(transaction=True)
def test_one_batch_reads_users_and_blacklist_in_two_queries():
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    User = get_user_model()
    ann = User.objects.create_user("ann", password="x")
    ben = User.objects.create_user("ben", password="x")
    outstanding = OutstandingToken.objects.create(user=ben, jti="j-black", token="t",
                                                  expires_at="2100-01-01T00:00:00Z")
    BlacklistedToken.objects.create(token=outstanding)
    manager = AuthManager()
    keys = [(str(ann.pk), "j1"), (ann.pk, "j2"), (str(ben.pk), "j-black"), ("987654321", "j3"),
            ("abc", "j4"), (2**70, "j5"), (str(ben.pk), None)]
    with CaptureQueriesContext(connections["default"]) as queries:
        out = manager._lookup_sync(keys)
    assert len(queries) == 2
    users = [u.pk if u is not None else None for u, _ in out]
    assert users == [ann.pk, ann.pk, ben.pk, None, None, None, ben.pk]
    assert [black for _, black in out] == [False, False, True, False, False, False, False]
    assert out[0][0] is not out[1][0]  # each handshake its own user object


@pytest.mark.django_db(transaction=True)
async def test_concurrent_handshakes_of_one_user_share_a_lookup_and_refusals_stay_per_token():
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    def setup():
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user("cara", password="x")
        good, bad = access_token_for(user), access_token_for(user)
        o = OutstandingToken.objects.create(user=user, jti=bad["jti"], token=str(bad),
                                            expires_at="2100-01-01T00:00:00Z")
        BlacklistedToken.objects.create(token=o)
        return user, str(good), str(bad)

    user, good, bad = await sync_to_async(setup)()
    with override_settings(ROCKSTAR_WS={"AUTH_USER_CACHE_TTL": 0}):
        manager = AuthManager()
        batches: list[int] = []
        real = manager._lookup_sync

        def counting(keys):
            batches.append(len(keys))
            return real(keys)
        manager._lookup_sync = counting  # type: ignore[method-assign]
        tokens = [manager.validate(good) for _ in range(5)] + [manager.validate(bad)]
        results = await asyncio.gather(*(manager.get_user(t) for t in tokens), return_exceptions=True)
    assert batches == [6]
    assert [r.pk for r in results[:5]] == [user.pk] * 5
    assert len({id(r) for r in results[:5]}) == 5
    assert isinstance(results[5], Deny) and "blacklisted" in results[5].log_detail


@pytest.mark.django_db(transaction=True)
def test_compiled_query_rows_equal_the_orms_and_a_shape_with_other_parameters_is_not_cached():
    from django.contrib.auth import get_user_model

    User = get_user_model()
    a = User.objects.create_user("dee", password="x", email="d@example.com")
    b = User.objects.create_user("eve", password="x", is_active=False)
    field = User._meta.get_field("id")
    compiled = CompiledIn(lambda values: User.objects.filter(id__in=values), field)

    def fields(u):
        return {k: v for k, v in u.__dict__.items() if k != "_state"}

    for _ in range(2):  # compiled on the first call, the cached SQL on the second
        got = sorted(compiled.run("default", [a.pk, b.pk]), key=lambda u: u.pk)
        assert [fields(u) for u in got] == [fields(User.objects.get(pk=a.pk)), fields(User.objects.get(pk=b.pk))]
        assert got[0]._state.db == "default" and not got[0]._state.adding
    assert compiled.run("default", []) == []
    # A manager-like filter with its own parameter: never cached, still answered by the ORM.
    with_email = CompiledIn(lambda values: User.objects.filter(id__in=values, email__contains="@"), field)
    for _ in range(2):
        assert [u.pk for u in with_email.run("default", [a.pk, b.pk])] == [a.pk]
    assert with_email._local.shapes[("default", 2)] is False


def test_a_finished_event_loop_is_not_kept_alive_by_the_coalescer():
    import gc
    import weakref

    loader = Coalescer(lambda keys: list(keys))
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(loader.load(3)) == 3
    finally:
        loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None and len(loader._loops) == 0
