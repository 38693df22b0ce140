"""The pub/sub route (docs/protocol.md) through real daphne processes, and Redis for the cluster cases.

Routes: tests/testapp/pubsub_routes.py; history per pattern: tests/settings.py (news 1000,
short.* 5 publications, brief.* 1 s). Redis tests use their own key prefix; the flush test runs
its own redis-server on a free port and flushes only that one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import uuid

import pytest
import redis as redis_lib

from tests.client import InvalidStatus, connect
from tests.hostile import stalled_reader
from tests.pubsub_client import open_client
from tests.servers import ROOT, free_port, wait_for_port
from tests.waiting import poll, wait_until_async

pytestmark = pytest.mark.timeout(240)


def ws_publish(server, group: str, data, *, count: int = 1, tenant: str | None = None) -> str:
    cmd = [sys.executable, str(ROOT / "manage.py"), "ws_publish", group, json.dumps(data), "--count", str(count)]
    if tenant:
        cmd += ["--tenant", tenant]
    done = subprocess.run(cmd, cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- protocol on one embedded daphne -------------------------------------------------------------
async def test_subscribe_publish_and_the_selected_subprotocol(daphne):
    async with open_client(daphne) as c:
        assert c.ws.subprotocol == "rockstar.pubsub.v1"
        reply = await c.subscribe("room.basics")
        assert set(reply["result"]) == {"epoch", "offset", "catchup"} and reply["result"]["catchup"] == 0
        published = await c.command("publish", group="room.basics", data={"text": "hi"})
        assert published["result"] == {"epoch": reply["result"]["epoch"], "offset": reply["result"]["offset"] + 1}
        await c.wait_for(lambda: c.pubs("room.basics"))
        assert c.pubs("room.basics")[0] == {"type": "pub", "group": "room.basics", "data": {"text": "hi"},
                                            **published["result"]}


async def test_no_pubsub_subprotocol_gets_v1_and_another_version_is_refused(daphne):
    async with open_client(daphne, subprotocols=None) as c:
        assert c.ws.subprotocol is None
        assert "result" in await c.subscribe("news")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(daphne, "/ws/test/pubsub", subprotocols=["rockstar.pubsub.v2"]):
            pass
    assert refused.value.response.status_code == 400


async def test_token_marker_next_to_v1_authenticates_and_v1_is_selected(daphne, server_env):
    from rockstar_ws.tokens import access_token_for

    from tests.auth_helpers import user_ids

    token = str(access_token_for(user_ids(server_env)["alice"], scopes="chat:read"))
    async with open_client(daphne, subprotocols=["rockstar.pubsub.v1", "rockstar.bearer", token]) as c:
        assert c.ws.subprotocol == "rockstar.pubsub.v1"
        assert "result" in await c.subscribe("members.x")  # authenticated-only: the token counted


async def test_bad_frames_and_errors_leave_the_connection_open(daphne):
    async with open_client(daphne) as c:
        await c.ws.send("[1, 2]")
        await c.ws.send('{"type": "subscribe", "group": "news"}')
        await c.wait_for(lambda: len([p for p in c.pushes if "error" in p]) >= 2)
        assert {p["error"]["code"] for p in c.pushes if "error" in p} == {"bad_request"}
        assert (await c.command("jump"))["error"]["code"] == "unsupported_type"
        assert (await c.subscribe("bad group!"))["error"]["code"] == "bad_group"
        assert (await c.subscribe("nowhere"))["error"]["code"] == "no_rule"
        assert (await c.subscribe("news", since={"epoch": 5}))["error"]["code"] == "bad_request"
        assert "result" in await c.subscribe("news")
        assert (await c.subscribe("news"))["error"]["code"] == "already_subscribed"
        assert (await c.command("unsubscribe", group="room.none"))["error"]["code"] == "not_subscribed"
        assert (await c.command("unsubscribe", group="news"))["result"] == {}
        assert "result" in await c.subscribe("news")  # the connection and its state are fine


async def test_a_group_without_history_has_no_positions(daphne):
    async with open_client(daphne) as c:
        assert (await c.subscribe("plain.x"))["result"] == {"catchup": 0}
        assert (await c.command("publish", group="plain.x", data=[1]))["result"] == {}
        await c.wait_for(lambda: c.pubs("plain.x"))
        assert c.pubs("plain.x") == [{"type": "pub", "group": "plain.x", "data": [1]}]


async def test_recovery_in_memory_and_beyond_the_size(daphne):
    async with open_client(daphne) as a:
        top = (await a.subscribe("short.size"))["result"]
        for i in range(3):
            await a.command("publish", group="short.size", data=i)
    since = {"epoch": top["epoch"], "offset": top["offset"]}
    async with open_client(daphne) as b:
        r = (await b.subscribe("short.size", since=since))["result"]
        assert r["recovered"] is True and r["catchup"] == 3
        await b.wait_for(lambda: len(b.pubs()) >= 3)
        assert [p["data"] for p in b.pubs()] == [0, 1, 2]
        for i in range(3, 10):  # short.* keeps 5: offset top+1 is trimmed now
            await b.command("publish", group="short.size", data=i)
    async with open_client(daphne) as c:
        r = (await c.subscribe("short.size", since=since))["result"]
        assert r["recovered"] is False and r["catchup"] == 0 and r["offset"] == top["offset"] + 10


async def test_recovery_beyond_the_ttl_says_recovered_false(daphne):
    async with open_client(daphne) as a:
        top = (await a.subscribe("brief.t"))["result"]
        await a.command("publish", group="brief.t", data="soon gone")
        await a.wait_for(lambda: a.pubs())
        since = {"epoch": top["epoch"], "offset": top["offset"]}
        answers = []

        async def expired() -> bool:
            async with open_client(daphne) as b:
                answers.append((await b.subscribe("brief.t", since=since))["result"])
            return answers[-1]["recovered"] is False

        async with asyncio.timeout(60):  # brief.* keeps a publication 1 s: ask until it is gone
            while not await expired():
                assert answers[-1]["recovered"] is True and answers[-1]["catchup"] == 1
        assert answers[-1]["catchup"] == 0


async def test_a_handler_subscribes_its_own_connection(daphne):
    async with open_client(daphne) as p:
        top = (await p.subscribe("room.handler"))["result"]
        for i in range(4):
            await p.command("publish", group="room.handler", data={"i": i})
        async with connect(daphne, "/ws/test/pubsub-handler") as h:
            await h.send(json.dumps({"group": "room.handler", "since": {"epoch": top["epoch"],
                                                                         "offset": top["offset"] + 1}}))
            got = [json.loads(await asyncio.wait_for(h.recv(), 30)) for _ in range(4)]
            assert [g["got"]["i"] for g in got[:3]] == [1, 2, 3]
            assert got[3] == {"recovered": True, "catchup": 3, "offset": top["offset"] + 4}
            await p.command("publish", group="room.handler", data={"i": 4})
            live = json.loads(await asyncio.wait_for(h.recv(), 30))
            assert live == {"got": {"i": 4}, "offset": top["offset"] + 5}


# -- permissions through the route ---------------------------------------------------------------
# (group, user or None, tenant host or None, expected: "ok", an error code, or "http <status>").
# Tokens: alice chat:read chat:write of tenant1, bob chat:read of tenant2, admin (staff) reports read.
PERMISSION_CASES = [
    ("news", None, None, "ok"),
    ("closed", "alice", None, "forbidden"),
    ("members.a", None, None, "unauthenticated"),
    ("members.a", "alice", None, "ok"),
    ("user:{alice}", "alice", None, "ok"),
    ("user:{alice}", "bob", None, "forbidden"),
    ("user:{alice}", None, None, "unauthenticated"),
    ("reports.q", "alice", None, "forbidden"),
    ("reports.q", "admin", None, "ok"),
    ("chat.x", "alice", None, "ok"),
    ("chat.x", "bob", None, "forbidden"),
    ("orders.{alice}", "alice", None, "ok"),
    ("orders.{alice}", "bob", None, "forbidden"),
    ("ledger", "admin", None, "ok"),
    ("ledger", "alice", None, "forbidden"),
    ("tenant:tenant1:x", "alice", None, "ok"),
    ("tenant:tenant1:x", "bob", None, "forbidden"),
    ("tenant:tenant1:x", None, None, "forbidden"),
    ("tenant:tenant1:x", "alice", "tenant1", "ok"),
    ("tenant:tenant1:x", "bob", "tenant1", "http 403"),
    ("vip.x", "alice", None, "ok"),
    ("vip.x", "bob", None, "forbidden"),
    ("vip.x", None, None, "forbidden"),
]
GRANTS = {"alice": ("chat:read chat:write", "tenant1"), "bob": ("chat:read", "tenant2"),
          "admin": ("reports read", None)}


async def test_permission_table_through_the_route(daphne, server_env):
    from rockstar_ws.tokens import access_token_for

    from tests.auth_helpers import user_ids

    ids = {k: str(v) for k, v in user_ids(server_env).items()}
    tokens = {name: str(access_token_for(ids[name], scopes=scopes, tenant=tenant))
              for name, (scopes, tenant) in GRANTS.items()}
    seen = []
    for group, user, host, _expected in PERMISSION_CASES:
        name = group.replace("{alice}", ids["alice"])
        kwargs = {"host": f"{host}.localhost:{daphne.port}"} if host else {}
        protocols = ["rockstar.pubsub.v1"] + (["rockstar.bearer", tokens[user]] if user else [])
        try:
            async with open_client(daphne, subprotocols=protocols, **kwargs) as c:
                reply = await c.subscribe(name)
                got = "ok" if "result" in reply else reply["error"]["code"]
        except InvalidStatus as exc:  # a tenant host's binding refusing another tenant's token
            got = f"http {exc.response.status_code}"
        seen.append((group, user, host, got))
    assert seen == PERMISSION_CASES


async def test_one_tenant_never_reaches_another_tenants_stream(daphne):
    t1, t2 = f"tenant1.localhost:{daphne.port}", f"tenant2.localhost:{daphne.port}"
    async with open_client(daphne, host=t1) as a, open_client(daphne, host=t2) as b, open_client(daphne) as n:
        ra, rb = (await a.subscribe("news"))["result"], (await b.subscribe("news"))["result"]
        await n.subscribe("news")
        assert ra["epoch"] != rb["epoch"]  # two streams
        await b.command("publish", group="news", data="for tenant2")
        await a.command("publish", group="news", data="for tenant1")
        await a.wait_for(lambda: a.pubs())
        await b.wait_for(lambda: b.pubs())
        await n.command("publish", group="news", data="no tenant")
        await n.wait_for(lambda: n.pubs())
        await a.command("publish", group="news", data="tenant1 again")
        await a.wait_for(lambda: len(a.pubs()) >= 2)
        assert [p["data"] for p in a.pubs()] == ["for tenant1", "tenant1 again"]
        assert [p["data"] for p in b.pubs()] == ["for tenant2"]
        assert [p["data"] for p in n.pubs()] == ["no tenant"]


async def test_ws_publish_needs_a_cross_process_layer(daphne):
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "ws_publish", "news", "1"], cwd=ROOT,
                          env=daphne.env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "channel layer" in done.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "manage.py"), "ws_publish", "news", "{oops"], cwd=ROOT,
                         env=daphne.env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "DATA must be JSON" in bad.stderr


# -- two daphne processes and Redis ----------------------------------------------------------------
@pytest.fixture
def cluster(server_factory, redis_url):
    """Two daphne processes (A, B) sharing Redis under a key prefix of their own, deleted afterwards."""
    prefix = f"ps{uuid.uuid4().hex[:8]}"
    env = {"REDIS_URL": redis_url, "ROCKSTAR_TEST_PREFIX": prefix}
    a, b = server_factory("daphne", env=env), server_factory("daphne", env=env)
    yield a, b
    r = redis_lib.Redis.from_url(redis_url)
    for key in r.scan_iter(f"{prefix}*"):
        r.delete(key)


async def _position(client, group: str) -> dict:
    await client.wait_for(lambda: client.pubs(group))
    last = client.pubs(group)[-1]
    return {"epoch": last["epoch"], "offset": last["offset"]}


async def test_reconnect_to_another_process_receives_exactly_the_50_missed_then_live(cluster):
    a, b = cluster
    async with open_client(b) as pub_b:
        async with open_client(a) as reader:
            assert "result" in await reader.subscribe("news")
            await pub_b.command("publish", group="news", data={"src": "B", "n": -1})  # crosses processes
            since = await _position(reader, "news")
        ws_publish(a, "news", {"src": "cli"}, count=25)
        for n in range(25):
            assert "result" in await pub_b.command("publish", group="news", data={"src": "B", "n": n})
        async with open_client(b) as reader:
            reply = (await reader.subscribe("news", since=since))["result"]
            assert reply["recovered"] is True and reply["catchup"] == 50
            assert reply["offset"] == since["offset"] + 50 and reply["epoch"] == since["epoch"]
            await reader.wait_for(lambda: len(reader.pubs()) >= 50)
            caught = reader.pubs()
            assert [p["offset"] for p in caught] == list(range(since["offset"] + 1, since["offset"] + 51))
            assert [p["data"] for p in caught] == [{"src": "cli"}] * 25 + [{"src": "B", "n": n} for n in range(25)]
            async with open_client(a) as pub_a:
                for n in range(5):
                    await pub_a.command("publish", group="news", data={"src": "A", "n": n})
            await reader.wait_for(lambda: len(reader.pubs()) >= 55)
            assert [p["data"] for p in reader.pubs()[50:]] == [{"src": "A", "n": n} for n in range(5)]
            assert [p["offset"] for p in reader.pubs()] == list(range(since["offset"] + 1, since["offset"] + 56))


async def test_recovery_under_a_steady_publish_rate_has_no_gap_and_no_duplicate(cluster):
    a, b = cluster
    async with open_client(a) as reader:
        await reader.subscribe("news")
        async with open_client(a) as p:
            await p.command("publish", group="news", data="start")
        since = await _position(reader, "news")
    ws_publish(b, "news", "missed", count=25)
    published: list[int] = []
    stop, more = asyncio.Event(), asyncio.Event()

    async def published_at_least(n: int) -> None:
        async with asyncio.timeout(60):
            while len(published) < n:
                more.clear()
                await more.wait()

    async def steady(server) -> None:  # about 50 publications/s from each process, replies awaited
        async with open_client(server) as p:
            while not stop.is_set():
                r = await p.command("publish", group="news", data="steady")
                published.append(r["result"]["offset"])
                more.set()
                await asyncio.sleep(0.02)  # pacing of the publisher, not a wait for a result

    publishers = [asyncio.ensure_future(steady(a)), asyncio.ensure_future(steady(b))]
    try:
        await asyncio.sleep(0)  # let the publishers start before the catch-up
        async with open_client(b) as reader:
            await published_at_least(10)
            reply = (await reader.subscribe("news", since=since))["result"]
            assert reply["recovered"] is True and reply["catchup"] >= 25
            await published_at_least(reply["catchup"] + 60)  # live ones keep coming meanwhile
            stop.set()
            await asyncio.gather(*publishers)
            top = max(published)
            await reader.wait_for(lambda: reader.pubs() and reader.pubs()[-1]["offset"] >= top)
            offsets = [p["offset"] for p in reader.pubs()]
            assert offsets == list(range(since["offset"] + 1, top + 1))  # every one, once, in order
            assert [p["data"] for p in reader.pubs()[:25]] == ["missed"] * 25
    finally:
        stop.set()
        await asyncio.gather(*publishers, return_exceptions=True)


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test on a free port (it may be flushed), without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=30)


async def test_after_redis_lost_its_data_recovery_says_recovered_false(server_factory, own_redis):
    server = server_factory("daphne", env={"REDIS_URL": own_redis, "ROCKSTAR_TEST_PREFIX": "own"})
    async with open_client(server) as c:
        await c.subscribe("news")
        await c.command("publish", group="news", data=1)
        since = await _position(c, "news")
    redis_lib.Redis.from_url(own_redis).flushall()
    async with open_client(server) as c:
        reply = (await c.subscribe("news", since=since))["result"]
        assert reply["recovered"] is False and reply["catchup"] == 0
        assert reply["epoch"] != since["epoch"] and reply["offset"] == 0
        await c.command("publish", group="news", data=2)  # the stream goes on in its new epoch
        await c.wait_for(lambda: c.pubs())
        assert c.pubs()[0]["offset"] == 1 and c.pubs()[0]["epoch"] == reply["epoch"]


async def test_presence_command_and_join_leave_pushes(daphne):
    async with open_client(daphne) as a:
        assert "result" in await a.subscribe("room.presence", presence=True)
        async with open_client(daphne) as b:
            assert "result" in await b.subscribe("room.presence")
            await a.wait_for(lambda: any(p.get("type") == "join" for p in a.pushes))
            assert (await a.command("presence", group="room.presence"))["result"]["clients"] == 2
        await a.wait_for(lambda: any(p.get("type") == "leave" for p in a.pushes))
        assert (await a.command("presence", group="room.presence"))["result"] == {"clients": 1, "users": []}
        assert (await a.command("presence", group="news"))["error"]["code"] in ("forbidden", "not_subscribed")


async def test_subscribe_while_presence_redis_is_down_is_refused_cleanly_then_works(server_factory, private_redis):
    """room.* has presence: subscribing joins the presence store; with its Redis down the reply is
    the retryable ``history_unavailable`` (not ``internal``), nothing stays half-subscribed, and the
    same command succeeds once Redis is back."""
    server = server_factory(env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
        {"PRESENCE": {"REDIS": private_redis.url, "HEARTBEAT": 1, "TTL": 3}})})
    async with open_client(server) as c:
        assert "result" in await c.subscribe("room.up")
        private_redis.stop()
        reply = await c.subscribe("room.down")
        assert reply["error"]["code"] == "history_unavailable" and "presence" in reply["error"]["message"], reply
        private_redis.start()

        async def subscribed() -> dict | None:
            reply = await c.subscribe("room.down")
            assert "result" in reply or reply["error"]["code"] == "history_unavailable", reply
            return reply.get("result")
        assert await wait_until_async(subscribed, timeout=30, interval=0.2)
        await c.command("publish", group="room.down", data="back")
        await c.wait_for(lambda: c.pubs("room.down"))
        assert [p["data"] for p in c.pubs("room.down")] == ["back"]
    assert "pub/sub command on" not in server.output()  # no unexpected exception was logged


# -- concurrent publishers: batches of appends, fanned out back to back ----------------------------
async def _publish_concurrently(servers, readers, group: str, per_server: int, each: int) -> None:
    """``per_server`` publisher connections on each server publish ``each`` times at once (replies
    awaited, so a process's writer appends whatever queued meanwhile as one batch); every reader
    must get every publication once, in offset order, each at the offset its publisher was told."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(open_client(s)) for s in servers for _ in range(per_server)]

        async def publisher(n: int, c) -> dict[int, dict]:
            told: dict[int, dict] = {}
            for i in range(each):
                r = await c.command("publish", group=group, data={"p": n, "i": i})
                told[r["result"]["offset"]] = {"p": n, "i": i}
            assert list(told) == sorted(told)  # a publisher's own publications in its order
            return told

        results = await asyncio.gather(*(publisher(n, c) for n, c in enumerate(clients)))
    told = {o: d for r in results for o, d in r.items()}
    total = len(clients) * each
    first = min(told)
    assert sorted(told) == list(range(first, first + total))  # no offset repeated or skipped
    for reader in readers:
        await reader.wait_for(lambda r=reader: len(r.pubs(group)) >= total)
        got = reader.pubs(group)
        assert [p["offset"] for p in got] == list(range(first, first + total))
        assert [p["data"] for p in got] == [told[o] for o in range(first, first + total)]


async def test_concurrent_publishers_of_one_process_reach_subscribers_once_in_offset_order(daphne):
    group = f"room.c{uuid.uuid4().hex[:8]}"
    async with open_client(daphne) as r1, open_client(daphne) as r2:
        for r in (r1, r2):
            assert "result" in await r.subscribe(group)
        await _publish_concurrently([daphne], [r1, r2], group, per_server=8, each=10)


async def test_concurrent_publishers_of_two_processes_reach_subscribers_once_in_offset_order(cluster):
    a, b = cluster
    async with open_client(a) as ra, open_client(b) as rb:
        for r in (ra, rb):
            assert "result" in await r.subscribe("news")
        # Warm both processes' taps and stores, so the first batches are not the subscribe's.
        async with open_client(a) as p:
            assert "result" in await p.command("publish", group="news", data="start")
        for r in (ra, rb):
            await r.wait_for(lambda r=r: len(r.pubs("news")) >= 1)
            r.pushes.clear()
        await _publish_concurrently([a, b], [ra, rb], "news", per_server=6, each=25)


async def test_publishes_while_the_history_redis_is_down_fail_and_later_ones_go_through(server_factory,
                                                                                         private_redis):
    # Embedded layer, history in a Redis of this test: with it stopped, every publication of the
    # batches under way answers history_unavailable (none hangs, none is fanned out); once it is
    # back, the stream's writer goes on.
    history = {"GROUPS": [{"pattern": "news", "size": 100, "ttl": 600}], "REDIS": private_redis.url}
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
        {"PUBSUB_HISTORY": history, "MESSAGE_RATE": 0})})
    async with contextlib.AsyncExitStack() as stack:
        publishers = [await stack.enter_async_context(open_client(server)) for _ in range(6)]
        assert "result" in await publishers[0].command("publish", group="news", data="before")
        private_redis.stop()
        down = await asyncio.gather(*(p.command("publish", group="news", data="lost") for p in publishers))
        assert all(r.get("error", {}).get("code") == "history_unavailable" for r in down), down
        private_redis.start()
        async with open_client(server) as reader:
            assert "result" in await reader.subscribe("news")
            after = await asyncio.gather(*(p.command("publish", group="news", data=f"after-{n}")
                                           for n, p in enumerate(publishers)))
            assert all("result" in r for r in after), after
            await reader.wait_for(lambda: len(reader.pubs("news")) >= 6)
            got = reader.pubs("news")
            assert sorted(p["data"] for p in got) == [f"after-{n}" for n in range(6)]  # no "lost" one
            assert [p["offset"] for p in got] == list(range(1, 7))  # Redis came back empty: a new epoch


# -- live publications written straight to daphne's socket -----------------------------------------
def _stalled_subscriber(server, group: str):
    """A pub/sub client that subscribes to ``group`` and then never reads."""
    body = json.dumps({"id": 1, "type": "subscribe", "group": group}).encode()
    return stalled_reader(server, "/ws/test/pubsub", subprotocol="rockstar.pubsub.v1", first=body)


async def test_a_subscriber_that_never_reads_is_closed_by_the_write_buffer_limit_on_daphne(server_factory):
    """Live publications reach daphne's socket directly (the frame prepared once per process) only
    while the guard has nothing to watch: a subscriber that never reads still passes
    WRITE_BUFFER_LIMIT, is closed with 1013, and the reading subscriber gets every publication once,
    in offset order."""
    limit = 256 * 1024
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
        {"MESSAGE_RATE": 0, "WRITE_BUFFER_LIMIT": limit})})
    group = f"room.stall{uuid.uuid4().hex[:6]}"
    async with open_client(server) as fast, open_client(server) as publisher:
        first = (await fast.subscribe(group))["result"]["offset"]
        slow = _stalled_subscriber(server, group)
        try:
            count, pad = 400, "x" * 32 * 1024  # 13 MB: far past the kernel's buffers and the limit
            for _ in range(count):
                assert "result" in await publisher.command("publish", group=group, data={"p": pad})
            await fast.wait_for(lambda: len(fast.pubs(group)) >= count, deadline=60)
            offsets = [p["offset"] for p in fast.pubs(group)]
            assert offsets == list(range(first + 1, first + count + 1))

            from tests.e2e.test_groups import stats

            st = await poll(lambda: stats(server), lambda st: st["closed"].get("1013"), timeout=40)
            assert st["closed"].get("1013") == 1, f"the stalled subscriber was not closed with 1013: {st}"
        finally:
            slow.close()
