"""Unit tests of the registry's settings and bookkeeping (the behaviour is proven end to end in test_live.py)."""

from __future__ import annotations

import asyncio
import uuid
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from rockstar_ws import Deny, WebSocketServer
from rockstar_ws.core.context import Context, Request
from rockstar_ws.core.routing import Route
from rockstar_ws.registry import LocalRegistry, RedisRegistry, get_registry, redis_url_from_settings

REDIS_LAYER = "channels_redis.core.RedisChannelLayer"


@pytest.mark.parametrize("hosts, url", [
    (["redis://h:1/2"], "redis://h:1/2"),
    ([("h", 1)], "redis://h:1"),
    ([{"address": "redis://h:3/0"}], "redis://h:3/0"),
])
def test_redis_url_defaults_to_the_channel_layers_host(hosts, url):
    layers = {"default": {"BACKEND": REDIS_LAYER, "CONFIG": {"hosts": hosts}}}
    with override_settings(CHANNEL_LAYERS=layers):
        assert redis_url_from_settings() == url
        assert isinstance(get_registry(), RedisRegistry)
        with override_settings(ROCKSTAR_WS={"REGISTRY_REDIS_URL": ""}):
            assert redis_url_from_settings() == ""
            assert type(get_registry()) is LocalRegistry


def test_in_memory_layer_means_local_registry():
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        assert redis_url_from_settings() == ""


def test_ttl_must_outlast_two_heartbeats():
    with pytest.raises(ImproperlyConfigured, match="REGISTRY_TTL"):
        RedisRegistry("redis://localhost", heartbeat=5, ttl=8)


def _ctx(server: WebSocketServer, remote: str = "10.0.0.1:5000") -> Context:
    request = Request(path="/ws/x", host="example.com", remote_addr=remote, local_addr="", headers=None)  # type: ignore[arg-type]
    return Context(request, {"user": None}, server, Route(path="/ws/x", handler=_handler))


async def _handler(ctx, conn):
    pass


async def test_release_is_idempotent_and_limits_apply():
    registry = LocalRegistry("test:1")
    server = WebSocketServer(name="unit")
    registry.install(server)
    registry.install(server)
    assert [s.run for s in server.pipeline if s.name == "admission"] == [registry.admit]
    with override_settings(ROCKSTAR_WS={"MAX_CONNECTIONS_PER_IP": 1}):
        release = await registry.admit(_ctx(server))
        with pytest.raises(Deny) as refused:
            await registry.admit(_ctx(server, "10.0.0.1:5001"))
        assert refused.value.status == 429 and refused.value.reason == "too many connections from this address"
        other = await registry.admit(_ctx(server, "10.0.0.2:5000"))
        snap = await registry.snapshot(records=True)
        assert snap["total"] == 2 and snap["by_ip"] == {"10.0.0.1": 1, "10.0.0.2": 1}
        assert snap["by_route"] == {"/ws/x": 2} and len(snap["connections"]) == 2
        await release()
        await release()
        await other()
    assert registry.total == 0 and dict(registry.counts) == {} and registry.records == {}
    assert registry.limited["ip"] == 1
    registry.uninstall(server)
    assert "admission" not in server.pipeline.names


def test_ws_connections_says_when_it_sees_only_its_own_process():
    out = StringIO()
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        call_command("ws_connections", stdout=out)
    assert "Local view only" in out.getvalue() and "0 live connection(s) in this process" in out.getvalue()


def test_system_check_names_bad_limit_and_heartbeat_settings():
    from rockstar_ws.checks import check_registry

    with override_settings(ROCKSTAR_WS={"MAX_CONNECTIONS_PER_IP": -1, "REGISTRY_TTL": 4.0}):
        ids = sorted(e.id for e in check_registry())
    assert ids == ["rockstar_ws.E101", "rockstar_ws.E102"]
    assert check_registry() == []


async def _admit_all(registries, n: int) -> tuple[list, int]:
    server = WebSocketServer(name="burst")

    async def one(i: int):
        try:
            return await registries[i % len(registries)].admit(_ctx(server, f"10.9.9.9:{i}"))
        except Deny as deny:
            assert deny.status == 429
            return None
    results = await asyncio.gather(*[one(i) for i in range(n)])
    admitted = [r for r in results if r is not None]
    return admitted, n - len(admitted)


async def test_limits_hold_under_a_concurrent_burst_across_two_registries(redis_url):
    """Check and increment are one Lua script: two processes racing for the last places never overshoot."""
    prefix = f"rockstar-test-{uuid.uuid4().hex[:12]}:live:"
    a = RedisRegistry(redis_url, prefix=prefix, process="host-a:1")
    b = RedisRegistry(redis_url, prefix=prefix, process="host-b:2")
    try:
        with override_settings(ROCKSTAR_WS={"MAX_CONNECTIONS_PER_IP": 5, "MAX_CONNECTIONS": 4}):
            admitted, refused = await _admit_all([a, b], 30)
            assert (len(admitted), refused) == (5, 25)
            snap = await a.snapshot()
            assert snap["mode"] == "cluster" and snap["total"] == 5 and snap["by_ip"] == {"10.9.9.9": 5}
            for release in admitted:
                await release()
            assert (await b.snapshot())["total"] == 0
            # The per-process limit counts handshakes still waiting for Redis.
            before = a.limited["process"]
            admitted, refused = await _admit_all([a], 10)
            assert len(admitted) == 4 and a.limited["process"] - before == 6
            for release in admitted:
                await release()
    finally:
        await a.close()
        await b.close()
        import redis

        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


def test_registry_redis_url_takes_a_sentinel_host_dict():
    sentinel = {"sentinels": [("10.0.0.1", 26379)], "master_name": "mymaster"}
    with override_settings(ROCKSTAR_WS={"REGISTRY_REDIS_URL": sentinel}):
        assert redis_url_from_settings() == "sentinel:mymaster"
        registry = get_registry()
        assert isinstance(registry, RedisRegistry) and registry.client_factory is not None
    with override_settings(ROCKSTAR_WS={"REGISTRY_REDIS_URL": {"address": "redis://h:1/2"}}):
        assert redis_url_from_settings() == "redis://h:1/2"
        assert get_registry().client_factory is None  # type: ignore[attr-defined]
    with_options = {"address": "redis://:pw@h:1/2", "health_check_interval": 30}
    with override_settings(ROCKSTAR_WS={"REGISTRY_REDIS_URL": with_options}):
        assert redis_url_from_settings() == "redis://:pw@h:1/2"
        registry = get_registry()
        assert isinstance(registry, RedisRegistry) and registry.client_factory is not None  # the options kept


@pytest.mark.parametrize("bad, message", [
    ({"sentinels": [("h", "26379")], "master_name": "m"}, r"REGISTRY_REDIS_URL.*\(host, port\) pairs"),
    ({"master_name": "m"}, r"REGISTRY_REDIS_URL.*needs 'address'"),
    ({"address": "redis://x", "sentinels": [("h", 1)], "master_name": "m"}, "not both"),
])
def test_a_wrong_registry_host_dict_is_refused_at_start_up(bad, message):
    from rockstar_ws.checks import check_registry

    with override_settings(ROCKSTAR_WS={"REGISTRY_REDIS_URL": bad}):
        with pytest.raises(ImproperlyConfigured, match=message):
            redis_url_from_settings()
        assert [e.id for e in check_registry(None)] == ["rockstar_ws.E103"]


async def test_a_burst_goes_to_redis_in_a_few_batches_through_a_pool_of_two(redis_url, key_prefix):
    """300 handshakes at once: each admission is checked in order inside one script per batch,
    so the limit is exact, and one batch in flight needs one pooled connection, not 300."""
    from rockstar_ws.core.redis import waiting_client

    registry = RedisRegistry(redis_url, prefix=key_prefix, process="host-burst:1",
                             client_factory=lambda: waiting_client(redis_url, 1.0, max_connections=2))
    try:
        with override_settings(ROCKSTAR_WS={"MAX_CONNECTIONS_PER_IP": 250}):
            admitted, refused = await _admit_all([registry], 300)
            assert (len(admitted), refused) == (250, 50)
            assert registry.redis_ok and registry.last_error == ""
            assert registry.batched == 300 and registry.batches <= 10, registry.batches
            assert (await registry.snapshot())["by_ip"] == {"10.9.9.9": 250}
            await asyncio.gather(*[release() for release in admitted])
            assert (await registry.snapshot())["total"] == 0
            assert registry.batched == 550
    finally:
        await registry.close()


def _one_connection_client(url: str):
    """A client whose pool has one connection and gives up waiting for it after 0.2 s."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=1, timeout=0.2, socket_timeout=10)
    return aioredis.Redis(connection_pool=pool)


async def test_a_dry_pool_is_logged_as_such_not_as_redis_down(redis_url, key_prefix, caplog):
    registry = RedisRegistry(redis_url, prefix=key_prefix, process="host-dry:1", timeout=5.0,
                             client_factory=lambda: _one_connection_client(redis_url))
    server = WebSocketServer(name="dry")
    try:
        client = registry._redis()
        await registry.beat()  # the heartbeat task starts; its one call is done
        hog = asyncio.ensure_future(client.blpop(f"{key_prefix}never", 1))  # holds the one connection
        await asyncio.sleep(0)
        with caplog.at_level("WARNING", logger="rockstar_ws.registry"):
            release = await registry.admit(_ctx(server))  # counted in this process meanwhile
        assert not registry.redis_ok and registry.total == 1
        lines = [r.getMessage() for r in caplog.records]
        assert any("pool exhausted, Redis not known to be down" in line for line in lines), lines
        assert not any("Redis unreachable" in line for line in lines), lines
        await hog
        await registry.beat()  # Redis answers: this process's counts are written there
        assert registry.redis_ok and (await registry.snapshot())["total"] == 1
        await release()
    finally:
        await registry.close()


async def _redis_total(registry: RedisRegistry) -> tuple[int, int]:
    """This process's count and records as Redis holds them (not this process's own view)."""
    snap = await registry.snapshot(records=True)
    assert not snap.get("error"), snap
    return snap["total"], len(snap["connections"])


async def test_a_release_reaches_redis_while_another_batch_has_failed(redis_url, key_prefix):
    """A failed batch (here: no pooled connection in time) marks Redis as failing for the whole
    process; a connection admitted through Redis before must still be released there, or it stays
    counted until a heartbeat rewrites the counts, which a storm of handshakes postpones for good.
    A release for an admission Redis never ran changes nothing there."""
    registry = RedisRegistry(redis_url, prefix=key_prefix, process="host-leak:1", timeout=5.0, heartbeat=60,
                             ttl=120, client_factory=lambda: _one_connection_client(redis_url))
    server = WebSocketServer(name="leak")
    try:
        client = registry._redis()
        await registry.beat()
        release_a = await registry.admit(_ctx(server, "10.0.0.1:1"))
        release_c = await registry.admit(_ctx(server, "10.0.0.3:1"))
        assert await _redis_total(registry) == (2, 2)
        hog = asyncio.ensure_future(client.blpop(f"{key_prefix}never", 1))  # holds the one connection
        await asyncio.sleep(0)
        release_b = await registry.admit(_ctx(server, "10.0.0.2:1"))  # counted here only
        assert not registry.redis_ok and registry.total == 3
        await hog
        await release_a()
        assert await _redis_total(registry) == (1, 1)
        await release_b()  # never in Redis: C stays counted there
        assert await _redis_total(registry) == (1, 1)
        await release_c()
        assert await _redis_total(registry) == (0, 0)
        assert registry.total == 0
    finally:
        await registry.close()


async def test_an_admission_whose_waiter_was_cancelled_is_given_back_in_redis(redis_url, key_prefix):
    """daphne cancels an application it timed out, maybe while its admission waits for the batch:
    the batch still admits it in Redis, and the registry must release what it admitted there."""
    from tests.waiting import wait_until_async

    registry = RedisRegistry(redis_url, prefix=key_prefix, process="host-cancel:1", timeout=5.0, heartbeat=60,
                             ttl=120, client_factory=lambda: _one_connection_client_waiting(redis_url))
    server = WebSocketServer(name="cancel")
    try:
        client = registry._redis()
        await registry.beat()
        release_live = await registry.admit(_ctx(server, "10.0.0.1:1"))
        batches = registry.batches
        hog = asyncio.ensure_future(client.blpop(f"{key_prefix}never", 1))  # the batch waits for it
        await asyncio.sleep(0)
        waiter = asyncio.ensure_future(registry.admit(_ctx(server, "10.0.0.2:1")))
        await wait_until_async(lambda: not registry._queue and registry._pending == 1, timeout=10)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await hog
        await wait_until_async(lambda: registry.batches > batches, timeout=30)  # Redis admitted it
        await wait_until_async(lambda: registry.batches > batches + 1, timeout=30)  # and gave it back
        assert await _redis_total(registry) == (1, 1) and registry.total == 1
        assert registry.redis_ok and not registry._dirty
        await release_live()
        assert await _redis_total(registry) == (0, 0)
    finally:
        await registry.close()


def _one_connection_client_waiting(url: str):
    """A client whose pool has one connection and waits up to 20 s for it."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=1, timeout=20, socket_timeout=10)
    return aioredis.Redis(connection_pool=pool)


async def test_every_key_expires_and_a_leaving_process_takes_its_own_away(redis_url, key_prefix):
    """Nothing of the registry stays in Redis without an expiry (the set of nodes included, and
    it only lengthens: a process with a shorter TTL never shortens another's), and a process that
    leaves (a clean shutdown) removes its node at once; a release after that changes nothing and
    a handshake after it is refused with 503."""
    import redis

    client = redis.Redis.from_url(redis_url)
    long = RedisRegistry(redis_url, prefix=key_prefix, process="host-long:1", heartbeat=20, ttl=60)
    short = RedisRegistry(redis_url, prefix=key_prefix, process="host-short:2", heartbeat=1, ttl=2)
    server = WebSocketServer(name="leave")
    try:
        await long.beat()
        release = await long.admit(_ctx(server, "10.0.1.1:1"))
        await short.beat()
        await short.admit(_ctx(server, "10.0.1.2:1"))
        keys = [k.decode() for k in client.scan_iter(f"{key_prefix}*")]
        assert f"{key_prefix}nodes" in keys and len(keys) == 7  # the set + 3 keys per process
        for key in keys:
            assert 0 < client.pttl(key) <= 60_000, key
        assert client.pttl(f"{key_prefix}nodes") > 2_000  # the short TTL did not shorten it
        assert (await long.snapshot())["total"] == 2
        await short.leave()
        assert client.smembers(f"{key_prefix}nodes") == {b"host-long:1"}
        assert not client.exists(*(f"{key_prefix}node:host-short:2:{k}" for k in ("alive", "counts", "conns")))
        assert (await long.snapshot())["total"] == 1
        with pytest.raises(Deny) as refused:
            await short.admit(_ctx(server, "10.0.1.3:1"))
        assert refused.value.status == 503
        await long.leave()
        await release()  # after the leave: nothing comes back
        assert list(client.scan_iter(f"{key_prefix}*")) == []
    finally:
        await long.close()
        await short.close()
        client.close()
