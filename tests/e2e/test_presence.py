"""Presence through real daphne processes: listings, per-user join/leave, kill -9, the demo rooms.

Clients are ``websockets`` clients of ``/ws/test/presence[-auth]/<group>`` (tests/testapp/
presence_routes.py); every wait is on a message or a listing reaching its value, with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from django.core.exceptions import ImproperlyConfigured

from rockstar_ws.auth.tokens import access_token_for
from tests.auth_helpers import user_ids
from tests.client import connect
from tests.conftest import CHROMIUM_ARGS, keys_deleted_after
from tests.waiting import wait_until_async

DEADLINE = 30.0


class Peer:
    """One client of the presence driver: replies in a queue, presence updates in a list."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.updates: list[dict[str, Any]] = []
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())
        self.id = ""

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("reply") == "presence":
                    self.updates.append(message)
                    self._changed.set()
                else:
                    await self.replies.put(message)
        except Exception:  # the connection ended: waits then fail on their deadline
            pass

    async def ask(self, op: str, **kw: Any) -> dict[str, Any]:
        await self.ws.send(json.dumps({"op": op, **kw}))
        return await asyncio.wait_for(self.replies.get(), DEADLINE)

    def entries(self, kind: str, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [m for u in self.updates for m in u[kind] if pred(m)]

    async def until(self, kind: str, pred: Callable[[dict[str, Any]], bool], timeout: float = DEADLINE) -> None:
        """Wait for a presence update listing a member matching ``pred`` under ``kind``."""
        async with asyncio.timeout(timeout):
            while not self.entries(kind, pred):
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def peer(server: Any, path: str) -> Peer:
    p = Peer(await connect(server, path, open_timeout=DEADLINE))
    ready = await asyncio.wait_for(p.replies.get(), DEADLINE)
    assert ready["reply"] == "ready", ready
    p.id = ready["id"]
    return p


def guest(group: str, name: str, events: bool = True) -> str:
    return f"/ws/test/presence/{group}?name={quote(name)}" + ("" if events else "&events=0")


def user(group: str, user_id: int, events: bool = False) -> str:
    token = quote(str(access_token_for(user_id, scopes="chat:read")), safe="")
    return f"/ws/test/presence-auth/{group}?token={token}" + ("" if events else "&events=0")


def named(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["info"].get("name") == name


def of_user(uid: int) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["user_id"] == str(uid)


@pytest.fixture
def ids(server_env: dict[str, str]) -> dict[str, int]:
    return user_ids(server_env)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """Redis key prefix of this test (layer, registry, presence); its keys are deleted afterwards."""
    with keys_deleted_after(redis_url, f"rwpres{uuid.uuid4().hex[:10]}") as name:
        yield name


def cluster_env(redis_url: str, prefix: str, **presence: Any) -> dict[str, str]:
    settings = {"MESSAGE_RATE": 0, "PRESENCE": {"KEY_PREFIX": f"{prefix}:presence:", **presence}}
    return {"REDIS_URL": redis_url, "ROCKSTAR_TEST_PREFIX": prefix, "ROCKSTAR_TEST_WS_SETTINGS": json.dumps(settings)}


async def two_tabs_of_alice(on_a: Any, on_b: Any, group: str, alice: int) -> None:
    """alice opens a tab on ``on_a`` then one on ``on_b``, closes one, then the other: a watcher
    (on ``on_a``) hears one join when the first opens and one leave when the last closes."""
    watcher = await peer(on_a, guest(group, "watcher"))
    tab1 = await peer(on_a, user(group, alice))
    await watcher.until("joined", of_user(alice))
    tab2 = await peer(on_b, user(group, alice))
    # An end marker: a guest joining after tab2. Updates of one group come in order per
    # process, so once the marker is heard a second join of alice would have been heard too.
    marker = await peer(on_b, guest(group, "marker-1", events=False))
    await watcher.until("joined", named("marker-1"))
    assert len(watcher.entries("joined", of_user(alice))) == 1, watcher.updates

    for asker in (watcher, marker):
        listed = (await asker.ask("list"))["members"]
        assert sorted(m["connection_id"] for m in listed) == sorted(p.id for p in (watcher, tab1, tab2, marker))
        assert sorted(m["user_id"] for m in listed if m["user_id"]) == [str(alice), str(alice)]
        assert all("process" not in m for m in listed)  # names a host: never sent to clients
        assert await asker.ask("stats") == {"reply": "stats", "connections": 4, "users": 3}

    await tab1.close()
    await wait_until_async(lambda: _count(watcher, 3), timeout=DEADLINE)
    marker2 = await peer(on_a, guest(group, "marker-2", events=False))
    await watcher.until("joined", named("marker-2"))
    assert watcher.entries("left", of_user(alice)) == [], "closing one of two tabs is not a leave"

    await tab2.close()
    await watcher.until("left", of_user(alice))
    marker3 = await peer(on_b, guest(group, "marker-3", events=False))
    await watcher.until("joined", named("marker-3"))
    assert len(watcher.entries("left", of_user(alice))) == 1, watcher.updates
    assert len(watcher.entries("joined", of_user(alice))) == 1, watcher.updates
    for p in (watcher, marker, marker2, marker3):
        await p.close()


async def _count(asker: Peer, connections: int) -> bool:
    return (await asker.ask("stats"))["connections"] == connections


# -- embedded (one daphne, in-memory layer and store) ---------------------------------------------
async def test_embedded_two_tabs_are_one_join_and_one_leave(daphne, ids):
    await two_tabs_of_alice(daphne, daphne, f"emb-{uuid.uuid4().hex[:8]}", ids["alice"])


async def test_embedded_leave_rejoin_sync_twin_and_close(daphne, ids):
    group = f"emb-{uuid.uuid4().hex[:8]}"
    watcher = await peer(daphne, guest(group, "watcher"))
    bob = await peer(daphne, user(group, ids["bob"]))
    await watcher.until("joined", of_user(ids["bob"]))
    synced = await watcher.ask("list_sync")  # the sync twins, from a worker thread of the server
    assert sorted(m["connection_id"] for m in synced["members"]) == sorted([watcher.id, bob.id])
    assert synced["stats"] == [2, 2]
    # Joining again updates the info, and is not a second join.
    assert (await bob.ask("rejoin", info={"name": "Bob B."}))["reply"] == "rejoined"
    listed = {m["connection_id"]: m for m in (await watcher.ask("list"))["members"]}
    assert listed[bob.id]["info"] == {"name": "Bob B."}
    assert (await bob.ask("leave"))["reply"] == "left"
    await watcher.until("left", of_user(ids["bob"]))
    assert [m["connection_id"] for m in (await watcher.ask("list"))["members"]] == [watcher.id]
    assert len(watcher.entries("joined", of_user(ids["bob"]))) == 1
    await bob.close()
    await watcher.close()


async def test_embedded_bad_joins_are_refused_with_a_clear_error_and_join_nothing(daphne):
    group = f"emb-{uuid.uuid4().hex[:8]}"
    p = await peer(daphne, guest(group, "checker", events=False))
    cases = {"info-without-presence": ("ValueError", "info and on_presence need presence=True"),
             "info-too-big": ("InfoTooLarge", "the limit is 512 (max_info_bytes)"),
             "info-not-a-dict": ("PresenceError", "info must be a dict (a JSON object), not list")}
    for case, (kind, words) in cases.items():
        reply = await p.ask("bad", case=case)
        assert reply["reply"] == "refused" and reply["error"].startswith(kind) and words in reply["error"], reply
        assert reply["groups"] == [group], "a refused presence join leaves no group membership behind"
    await p.close()


# -- two daphne processes, one Redis --------------------------------------------------------------
async def test_two_processes_list_the_same_members_and_hear_per_user_events(server_factory, redis_url, prefix,
                                                                            ids):
    # The host-dict form of the setting (channels-redis' shape, as for Sentinel).
    env = cluster_env(redis_url, prefix, REDIS={"address": redis_url})
    a, b = server_factory(env=env), server_factory(env=env)
    await two_tabs_of_alice(a, b, "room-two", ids["alice"])


async def test_kill_9_removes_a_process_members_within_the_ttl(server_factory, redis_url, prefix, ids):
    ttl, heartbeat = 4.0, 1.0
    env = cluster_env(redis_url, prefix, REDIS=redis_url, TTL=ttl, HEARTBEAT=heartbeat)
    a, b = server_factory(env=env), server_factory(env=env)
    group = "room-kill"
    watcher = await peer(a, guest(group, "watcher"))
    await peer(b, user(group, ids["alice"]))
    await peer(b, guest(group, "guest-on-b", events=False))
    await watcher.until("joined", of_user(ids["alice"]))
    await watcher.until("joined", named("guest-on-b"))
    assert len((await watcher.ask("list"))["members"]) == 3

    b.kill()
    killed = time.monotonic()
    last: dict[str, Any] = {}

    async def dropped_out() -> bool:  # the listing of the live process; each read timed from the kill
        last["members"] = (await watcher.ask("list"))["members"]
        last["seen"] = time.monotonic() - killed
        return [m["connection_id"] for m in last["members"]] == [watcher.id]
    await wait_until_async(dropped_out, timeout=ttl + DEADLINE, interval=0.1,
                           message=lambda: f"still listed {last['seen']:.1f}s after kill -9: {last['members']}")
    seen = last["seen"]
    # The documented window: within TTL of the last heartbeat (which came before the kill);
    # one extra heartbeat of slack covers the read's own latency on a loaded machine.
    assert seen <= ttl + heartbeat + 1.0, f"dropped out {seen:.1f}s after kill -9 (TTL {ttl}s)"
    # Their users' leaves reach the other processes' members too.
    await watcher.until("left", of_user(ids["alice"]))
    await watcher.until("left", named("guest-on-b"))
    await watcher.close()


# -- the setting ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "words"), [
    ({"REDIS": "localhost:6379"}, "must start with redis://"),
    ({"REDIS": 6379}, "must be a URL, a channels-redis host dict"),
    ({"REDIS": {"sentinels": [("h", "1")], "master_name": "m"}}, r"\(host, port\) pairs"),
    ({"TTL": 3, "HEARTBEAT": 2}, "at least twice HEARTBEAT"),
    ({"INTERVAL": "1"}, "INTERVAL'] must be a number of seconds"),
    ({"MAX_ENTRIES": 0}, "MAX_ENTRIES'] must be None or an int >= 1"),
    ({"REDIS_URL": "redis://x"}, r"unknown ROCKSTAR_WS\['PRESENCE'\] key"),
    (["REDIS"], "must be a dict"),
])
def test_bad_presence_settings_name_the_fix(settings, value, words):
    from rockstar_ws.presence.service import check_presence, presence_config

    settings.ROCKSTAR_WS = {**settings.ROCKSTAR_WS, "PRESENCE": value}
    with pytest.raises(ImproperlyConfigured, match=words):
        presence_config()
    assert [e.id for e in check_presence()] == ["rockstar_ws.E130"]


def test_presence_store_follows_the_registry_redis_unless_told(settings):
    from rockstar_ws.presence.service import presence_config

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.ROCKSTAR_WS = {**settings.ROCKSTAR_WS, "REGISTRY_REDIS_URL": None, "PRESENCE": {}}
    assert presence_config().redis is None  # embedded: in memory
    settings.ROCKSTAR_WS = {**settings.ROCKSTAR_WS, "REGISTRY_REDIS_URL": "redis://r:6379/1"}
    assert presence_config().redis == "redis://r:6379/1"
    settings.ROCKSTAR_WS = {**settings.ROCKSTAR_WS, "PRESENCE": {"REDIS": ""}}
    assert presence_config().redis is None
    sentinel = {"sentinels": [("10.0.0.1", 26379)], "master_name": "mymaster"}
    settings.ROCKSTAR_WS = {**settings.ROCKSTAR_WS, "REGISTRY_REDIS_URL": None, "PRESENCE": {}}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [sentinel]}}}
    config = presence_config()
    assert config.redis == sentinel and config.where == "sentinel master 'mymaster'"
    assert (config.heartbeat, config.ttl, config.interval) == (3.0, 10.0, 1.0)


# -- the demo room in a browser -------------------------------------------------------------------
def test_browser_a_logged_in_user_and_a_guest_see_each_others_names(chromium, daphne):
    pytest.importorskip("playwright")
    from playwright.sync_api import expect, sync_playwright

    room = f"names-{uuid.uuid4().hex[:6]}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            staff = browser.new_context().new_page()  # its own cookies: the session of admin
            staff.goto(f"{daphne.http_url}/admin/login/?next=/chat/{room}/")
            staff.fill("#id_username", "admin")
            staff.fill("#id_password", "admin-password")
            staff.click("input[type=submit]")
            expect(staff.locator("#status")).to_contain_text("Connected as admin", timeout=15000)
            visitor = browser.new_context().new_page()
            visitor.goto(f"{daphne.http_url}/chat/{room}/")
            visitor.fill("#name", "bob <i>")
            visitor.press("#name", "Enter")
            expect(visitor.locator("#status")).to_contain_text("Connected as bob <i>", timeout=15000)
            for page in (staff, visitor):
                members = page.locator("#members li")
                expect(members).to_have_text(["admin", "bob <i> (guest)"], timeout=15000)
            expect(staff.locator("#log .presence")).to_contain_text(["bob <i> (guest) joined"], timeout=15000)
        finally:
            browser.close()
