"""Authentication through a real daphne (and uvicorn) and a real client (docs/auth.md).

Tokens are minted in the test process with rockstar_ws.auth.tokens (tests.settings shares the
server processes' SECRET_KEY) for the users demo_setup created in the servers' database.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import jwt
import pytest
from rest_framework_simplejwt.tokens import RefreshToken
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus

from rockstar_ws.auth.tokens import access_token_for
from tests.auth_helpers import (
    blacklist_in_server,
    ensure_inactive_user,
    handshake_log_free_of,
    manage,
    probe_id,
    user_ids,
    with_token,
)
from tests.client import connect, recv_json
from tests.conftest import probe
from tests.waiting import wait_until_async

ANY = "/ws/test/auth/any"      # chat:read or chat:write
ALL = "/ws/test/auth/all"      # chat:read and chat:write
OPEN = "/ws/test/auth/open"    # any valid token
WRITE = "/ws/test/auth/write"  # chat:write


@pytest.fixture(scope="module")
def ids(server_env) -> dict[str, int]:
    return user_ids(server_env)


def alice(ids, **kw) -> str:
    kw.setdefault("scopes", ["chat:read", "chat:write"])
    kw.setdefault("tenant", "tenant1")
    return str(access_token_for(ids["alice"], **kw))


def bob(ids, **kw) -> str:
    kw.setdefault("scopes", ["chat:read"])
    kw.setdefault("tenant", "tenant2")
    return str(access_token_for(ids["bob"], **kw))


async def refused(server, path: str, **kw) -> tuple[int, str, bytes]:
    """Status, reason phrase and body of a handshake that must be refused."""
    try:
        async with connect(server, path, **kw):
            pass
    except InvalidStatus as exc:
        r = exc.response
        return r.status_code, r.reason_phrase, r.body or b""
    raise AssertionError(f"handshake to {path} was accepted, expected a refusal")


async def user_code_ran(server, probe: str) -> list[str]:
    """Events of middleware or handler recorded for ``probe`` (empty: no user code ran)."""
    return [e for e in await probe_events(server) if e.endswith(f":{probe}")]


async def probe_events(server) -> list[str]:
    return await probe(server, "events")


# -- the refusals, one test each -------------------------------------------------------------
def _refusal_cases():
    """name -> (token factory(ids) or None, path, status, client reason, logged detail)."""

    def forged(ids, **payload):
        base = {"token_type": "access", "exp": 4102444800, "iat": 1700000000, "jti": "x" * 32,
                "user_id": str(ids["alice"]), "scope": "chat:read chat:write"}
        base.update(payload)
        return base

    return {
        "missing": (None, ANY, 401, "missing token", "no token in query"),
        "malformed": (lambda ids: "not-a-jwt", ANY, 401, "invalid token", "malformed token"),
        "bad-signature": (lambda ids: jwt.encode(forged(ids), "another-key-" + "k" * 40, algorithm="HS256"),
                          ANY, 401, "invalid token", "bad signature"),
        "alg-none": (lambda ids: jwt.encode(forged(ids), None, algorithm="none"),
                     ANY, 401, "invalid token", "algorithm not allowed"),
        "expired": (lambda ids: alice(ids, lifetime=-30), ANY, 401, "token expired", "token expired (exp)"),
        "not-yet-valid": (lambda ids: alice(ids, nbf=4102444800), ANY, 401, "invalid token",
                          "token not yet valid (nbf)"),
        "refresh-token": (lambda ids: _refresh_token(ids["alice"]), ANY, 401, "invalid token", "wrong type"),
        "unknown-user": (lambda ids: str(access_token_for(987654321, scopes="chat:read")), ANY, 401,
                         "invalid token", "unknown user"),
        "inactive-user": (lambda ids: str(access_token_for(ids["dormant"], scopes="chat:read")), ANY, 401,
                          "invalid token", "inactive user"),
        "missing-scope": (lambda ids: bob(ids), WRITE, 403, "insufficient scope", "needs one of ['chat:write']"),
    }


def _refresh_token(user_id: int) -> str:
    token = RefreshToken()  # built directly: for_user would write OutstandingToken rows here
    token["user_id"] = str(user_id)
    token["scope"] = "chat:read chat:write"
    return str(token)


CASES = _refusal_cases()


@pytest.mark.parametrize("name", list(CASES))
async def test_refusal(daphne, server_env, ids, name):
    make, path, status, reason, detail = CASES[name]
    ids = {**ids, "dormant": ensure_inactive_user(server_env)} if name == "inactive-user" else ids
    token = make(ids) if make else None
    p = probe_id()
    url = with_token(path, token, p) if token is not None else f"{path}?probe={p}"
    got, phrase, _ = await refused(daphne, url)
    assert (got, phrase) == (status, reason)
    assert await user_code_ran(daphne, p) == []
    # The server logged the reason, never the token.
    def logged() -> str | None:
        log = daphne.output()
        return log if any(f"{path}" in line and detail in line for line in log.splitlines()) else None
    log = await wait_until_async(logged, message=lambda: daphne.output()[-2000:])
    if token:
        assert handshake_log_free_of(log, token)


async def test_blacklisted_access_token_is_refused_at_once_with_the_user_cache_off(server_env, ids, server_factory):
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps({"AUTH_USER_CACHE_TTL": 0})})
    token = alice(ids)
    p = probe_id()
    async with connect(server, with_token(ANY, token, probe_id())) as ws:  # valid before
        assert (await recv_json(ws))["user_id"] == str(ids["alice"])
    blacklist_in_server(server_env, token)
    got, phrase, _ = await refused(server, with_token(ANY, token, p))
    assert (got, phrase) == (401, "invalid token")
    assert await user_code_ran(server, p) == []
    await wait_until_async(lambda: "token blacklisted" in server.output(), message=server.output)


def _holds_open(pid: int, path) -> bool:
    """True when process ``pid`` has the file ``path`` open (Linux /proc)."""
    import os

    target = os.path.realpath(path)
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") == target:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


async def test_user_deactivated_in_another_process_is_refused_at_the_next_handshake(server_env, server_factory):
    """The user cache off and the lookup's persistent connection on (AUTH_DB_CONN_MAX_AGE): the
    server keeps its database connection open between handshakes, and still reads each change
    another process commits at the next handshake, both ways (no transaction is held open)."""
    import sqlite3

    from tests.auth_helpers import server_db, server_shell

    name = f"lookup-{probe_id()}"
    out = server_shell(server_env, (
        "from django.contrib.auth import get_user_model\n"
        f"print(get_user_model().objects.create_user({name!r}, password='x').pk)\n"))
    user_id = int(out.strip().splitlines()[-1])
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
        {"AUTH_USER_CACHE_TTL": 0, "AUTH_DB_CONN_MAX_AGE": 600})})
    token = str(access_token_for(user_id, scopes=["chat:read"]))
    db = server_db(server_env)

    async with connect(server, with_token(ANY, token, probe_id())) as ws:
        assert (await recv_json(ws))["user_id"] == str(user_id)
    assert server.proc is not None
    # The lookup's connection outlives the handshake (Django's CONN_MAX_AGE = 0 would close it).
    await wait_until_async(lambda: _holds_open(server.proc.pid, db), 10.0,
                           message="the server does not keep its database connection open")

    def set_active(active: bool) -> None:  # a direct write of another process, committed at once
        with sqlite3.connect(db, timeout=20) as conn:
            conn.execute("UPDATE auth_user SET is_active = ? WHERE id = ?", (int(active), user_id))

    set_active(False)
    p = probe_id()
    got, phrase, _ = await refused(server, with_token(ANY, token, p))
    assert (got, phrase) == (401, "invalid token")
    assert await user_code_ran(server, p) == []
    await wait_until_async(lambda: f"inactive user {user_id}" in server.output(), message=server.output)
    assert _holds_open(server.proc.pid, db)  # refused through the same, still open connection

    set_active(True)  # and back: the next handshake reads the new row again
    async with connect(server, with_token(ANY, token, probe_id())) as ws:
        assert (await recv_json(ws))["user_id"] == str(user_id)


async def test_with_the_lookup_connection_age_zero_the_server_closes_it_after_each_lookup(server_env, ids,
                                                                                          server_factory):
    from tests.auth_helpers import server_db

    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps(
        {"AUTH_USER_CACHE_TTL": 0, "AUTH_DB_CONN_MAX_AGE": 0})})
    assert server.proc is not None
    for _ in range(2):
        async with connect(server, with_token(ANY, alice(ids), probe_id())) as ws:
            assert (await recv_json(ws))["user_id"] == str(ids["alice"])
        await wait_until_async(lambda: not _holds_open(server.proc.pid, server_db(server_env)), 10.0,
                               message="the database connection stayed open with AUTH_DB_CONN_MAX_AGE = 0")


async def test_blacklisted_access_token_is_refused_within_the_default_cache_ttl(daphne, server_env, ids):
    """The default AUTH_USER_CACHE_TTL (5 s): a blacklist written by another process reaches new
    handshakes of a server process that cached the token's lookup after at most the TTL."""
    token = alice(ids)
    async with connect(daphne, with_token(ANY, token, probe_id())) as ws:  # valid, and now cached
        assert (await recv_json(ws))["user_id"] == str(ids["alice"])
    blacklist_in_server(server_env, token)
    async def refusal() -> tuple[str, int, str] | None:
        p = probe_id()
        try:
            got, phrase, _ = await refused(daphne, with_token(ANY, token, p))
        except AssertionError:  # still admitted from the cache
            return None
        return p, got, phrase

    # The TTL, plus the time a handshake and the shell take.
    p, got, phrase = await wait_until_async(refusal, 5.0 + 3.0, 0.5,
                                            message="the blacklisted token was still admitted after the cache TTL")
    assert (got, phrase) == (401, "invalid token")
    assert await user_code_ran(daphne, p) == []


async def test_the_core_private_route_still_refuses_without_a_token(daphne):
    got, phrase, _ = await refused(daphne, "/ws/test/private")
    assert (got, phrase) == (401, "missing token")


# -- success: what the handler sees -------------------------------------------------------------
async def test_success_sets_request_user_scopes_claims_and_tenant(daphne, ids):
    token = alice(ids)
    async with connect(daphne, with_token(ANY, token, probe_id())) as ws:
        info = await recv_json(ws)
        assert info == {
            "user_id": str(ids["alice"]), "tenant_id": "tenant1", "scopes": ["chat:read", "chat:write"],
            "username": "alice", "authenticated": True, "token_type": "access",
            "access_token_len": len(token), "source": "query", "subprotocol": None,
        }
        await ws.send("hello")
        assert await ws.recv() == f"User {ids['alice']}: hello"


# -- each token source ------------------------------------------------------------------------
async def test_source_query(daphne, ids):
    async with connect(daphne, with_token(ANY, alice(ids), probe_id())) as ws:
        assert (await recv_json(ws))["source"] == "query"


async def test_source_authorization_bearer(daphne, ids):
    headers = {"Authorization": f"Bearer {alice(ids)}"}
    async with connect(daphne, f"{ANY}?probe={probe_id()}", additional_headers=headers) as ws:
        info = await recv_json(ws)
        assert (info["source"], info["user_id"]) == ("header", str(ids["alice"]))


async def test_source_subprotocol_accepts_the_marker_and_never_echoes_the_token(daphne, ids):
    token = alice(ids)
    async with connect(daphne, f"{ANY}?probe={probe_id()}", subprotocols=["rockstar.bearer", token]) as ws:
        assert ws.subprotocol == "rockstar.bearer"
        assert token not in str(ws.response.headers)
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "rockstar.bearer"
        info = await recv_json(ws)
        assert (info["source"], info["subprotocol"]) == ("subprotocol", "rockstar.bearer")


async def test_marker_without_a_token_is_refused(daphne):
    p = probe_id()
    got, phrase, _ = await refused(daphne, f"{ANY}?probe={p}", subprotocols=["rockstar.bearer"])
    assert (got, phrase) == (401, "missing token")
    assert await user_code_ran(daphne, p) == []


async def test_sources_are_tried_in_order_and_a_bad_token_never_falls_through(daphne, ids):
    # The query comes first: a bad query token is refused even with a good header token.
    p = probe_id()
    headers = {"Authorization": f"Bearer {alice(ids)}"}
    got, _, _ = await refused(daphne, with_token(ANY, "garbage", p), additional_headers=headers)
    assert got == 401
    assert await user_code_ran(daphne, p) == []
    # Header before subprotocol: bob's header wins over alice's subprotocol token.
    async with connect(daphne, f"{ANY}?probe={probe_id()}", additional_headers={"Authorization": f"Bearer {bob(ids)}"},
                       subprotocols=["rockstar.bearer", alice(ids)]) as ws:
        assert (await recv_json(ws))["user_id"] == str(ids["bob"])


async def test_ws_token_command_prints_a_working_token(daphne, server_env, ids):
    token = manage(server_env, "ws_token", "alice", "--scope", "chat:write", "--tenant", "tenant9",
                   "--lifetime", "120").strip()
    async with connect(daphne, with_token(WRITE, token, probe_id())) as ws:
        info = await recv_json(ws)
        assert (info["user_id"], info["scopes"], info["tenant_id"]) == (str(ids["alice"]), ["chat:write"], "tenant9")


# -- scopes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("who", "path", "ok"), [
    ("bob", ANY, True),      # any-of: chat:read is enough
    ("bob", ALL, False),     # all-of: chat:write is missing
    ("alice", ALL, True),
    ("bob", WRITE, False),
    ("none", OPEN, True),    # no allowed_scopes: any valid token
    ("none", ANY, False),
])
async def test_scopes_any_of_and_all_of(daphne, ids, who, path, ok):
    if who == "none":
        token = str(access_token_for(ids["alice"]))
    else:
        token = (alice if who == "alice" else bob)(ids)
    p = probe_id()
    if ok:
        async with connect(daphne, with_token(path, token, p)) as ws:
            assert (await recv_json(ws))["username"] == (who if who != "none" else "alice")
    else:
        got, phrase, _ = await refused(daphne, with_token(path, token, p))
        assert (got, phrase) == (403, "insufficient scope")
        assert await user_code_ran(daphne, p) == []


async def test_scopes_list_claim_and_scope_string_are_joined(daphne, ids):
    minted = access_token_for(ids["bob"], scopes="chat:read")
    minted["scopes"] = ["chat:write"]
    token = str(minted)
    async with connect(daphne, with_token(ALL, token, probe_id())) as ws:
        assert (await recv_json(ws))["scopes"] == ["chat:read", "chat:write"]


# -- expiry and refresh ----------------------------------------------------------------------------
async def test_token_expiring_mid_connection_closes_with_4401(daphne, ids):
    async with connect(daphne, with_token(ANY, alice(ids, lifetime=4), probe_id())) as ws:
        await recv_json(ws)
        await ws.send("still here")
        assert (await ws.recv()).endswith("still here")
        with pytest.raises(ClientClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert (ws.close_code, ws.close_reason) == (4401, "token expired")


async def test_fresh_token_in_time_keeps_the_connection_open(daphne, ids):
    first = alice(ids, lifetime=4)
    async with connect(daphne, with_token(ANY, first, probe_id())) as ws:
        await recv_json(ws)
        fresh = alice(ids, lifetime=60)
        await ws.send(json.dumps({"rockstar.refresh": fresh}))
        ack = await recv_json(ws)
        assert abs(ack["rockstar.refreshed"] - json.loads(_payload(fresh))["exp"]) <= 1
        # Past the first token's exp (by the clock: the time itself is what this test is about).
        first_exp = json.loads(_payload(first))["exp"]
        await wait_until_async(lambda: time.time() > first_exp + 1, timeout=30, interval=0.2)
        await ws.send("after the old exp")
        assert await ws.recv() == f"User {ids['alice']}: after the old exp"


def _payload(token: str) -> str:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


@pytest.mark.parametrize(("make", "code", "reason"), [
    (lambda ids: bob(ids, lifetime=60, tenant="tenant1"), 4403, "token of another user"),
    (lambda ids: alice(ids, lifetime=60, tenant="tenant2"), 4403, "token of another tenant"),
    (lambda ids: alice(ids, lifetime=60, scopes=["other"]), 4403, "insufficient scope"),
    (lambda ids: alice(ids, lifetime=-5), 4401, "token expired"),
    (lambda ids: "garbage", 4401, "invalid token"),
    (lambda ids: _refresh_token(ids["alice"]), 4401, "invalid token"),
    (lambda ids: 42, 4400, "malformed refresh message"),
])
async def test_bad_refresh_closes_and_never_swaps_identity(daphne, ids, make, code, reason):
    async with connect(daphne, with_token(ANY, alice(ids, lifetime=60), probe_id())) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"rockstar.refresh": make(ids)}))
        with pytest.raises(ClientClosed):
            async with asyncio.timeout(10):
                while True:
                    message = await ws.recv()
                    assert "refreshed" not in message
        assert (ws.close_code, ws.close_reason) == (code, reason)


async def test_refresh_message_on_a_route_without_auth_is_plain_data(daphne):
    async with connect(daphne, "/ws/echo") as ws:
        text = json.dumps({"rockstar.refresh": "x"})
        await ws.send(text)
        assert await ws.recv() == text


# -- the session source (a server with a replaced auth manager) ----------------------------------------
@pytest.fixture(scope="module")
def session_server(server_env, tmp_path_factory):
    from tests.conftest import start_server

    server = start_server("daphne", server_env, tmp_path_factory.mktemp("auth-session"),
                          app="tests.testapp.auth_asgi:application")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice_session(server_env) -> str:
    from tests.auth_helpers import server_shell

    out = server_shell(server_env, (
        "from django.contrib.auth import get_user_model, BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "u = get_user_model().objects.get(username='alice')\n"
        "s = SessionStore(); s[SESSION_KEY] = str(u.pk)\n"
        "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "s[HASH_SESSION_KEY] = u.get_session_auth_hash(); s.save(); print(s.session_key)\n"))
    return out.strip().splitlines()[-1]


async def test_session_source_with_an_allowed_origin(session_server, alice_session, ids):
    headers = {"Cookie": f"sessionid={alice_session}", "Origin": f"http://localhost:{session_server.port}"}
    async with connect(session_server, f"{OPEN}?probe={probe_id()}", additional_headers=headers) as ws:
        info = await recv_json(ws)
        assert (info["source"], info["user_id"], info["username"]) == ("session", str(ids["alice"]), "alice")
        assert info["scopes"] == []


async def test_session_source_refuses_a_missing_origin_and_scoped_routes(session_server, alice_session):
    p = probe_id()
    got, phrase, _ = await refused(session_server, f"{OPEN}?probe={p}",
                                   additional_headers={"Cookie": f"sessionid={alice_session}"})
    assert (got, phrase) == (403, "origin not allowed")
    headers = {"Cookie": f"sessionid={alice_session}", "Origin": f"http://localhost:{session_server.port}"}
    got, phrase, _ = await refused(session_server, f"{ANY}?probe={p}", additional_headers=headers)
    assert (got, phrase) == (403, "insufficient scope")  # session users hold no scopes by default
    got, phrase, _ = await refused(session_server, f"{OPEN}?probe={p}",
                                   additional_headers={"Origin": f"http://localhost:{session_server.port}"})
    assert (got, phrase) == (401, "missing token")  # no cookie, no token
    assert await user_code_ran(session_server, p) == []


async def test_per_server_manager_turned_the_query_source_off(session_server, ids):
    p = probe_id()
    got, phrase, _ = await refused(session_server, with_token(ANY, alice(ids), p))
    assert (got, phrase) == (401, "missing token")
    assert await user_code_ran(session_server, p) == []
    async with connect(session_server, f"{ANY}?probe={probe_id()}",
                       additional_headers={"Authorization": f"Bearer {alice(ids)}"}) as ws:
        assert (await recv_json(ws))["source"] == "header"


# -- uvicorn: real statuses with a JSON body ------------------------------------------------------------
@pytest.mark.parametrize(("token", "path", "status", "error"), [
    (None, ANY, 401, "missing token"),
    ("not-a-jwt", ANY, 401, "invalid token"),
    ("expired", ANY, 401, "token expired"),
    ("bob", WRITE, 403, "insufficient scope"),
])
async def test_uvicorn_refusals_are_http_statuses_with_json(uvicorn, ids, token, path, status, error):
    if token == "expired":
        token = alice(ids, lifetime=-30)
    elif token == "bob":
        token = bob(ids)
    p = probe_id()
    url = with_token(path, token, p) if token else f"{path}?probe={p}"
    got, _, body = await refused(uvicorn, url)
    assert got == status
    assert json.loads(body) == {"error": error, "status": status}
    assert await user_code_ran(uvicorn, p) == []


async def test_uvicorn_accepts_the_subprotocol_source(uvicorn, ids):
    async with connect(uvicorn, f"{WRITE}?probe={probe_id()}", subprotocols=["rockstar.bearer", alice(ids)]) as ws:
        assert ws.subprotocol == "rockstar.bearer"
        await recv_json(ws)
        await ws.send("hi")
        assert await ws.recv() == f"User {ids['alice']}: hi"


async def test_demo_private_route_answers_user_id(daphne, ids):
    async with connect(daphne, "/ws/private", subprotocols=["rockstar.bearer", alice(ids)]) as ws:
        await ws.send("Hello Server!")
        assert await ws.recv() == f"User {ids['alice']}: Hello Server!"
    got, phrase, _ = await refused(daphne, "/ws/private", subprotocols=["rockstar.bearer", bob(ids)])
    assert (got, phrase) == (403, "insufficient scope")


def test_lifetime_helper_accepts_seconds_and_timedelta(ids):
    a = access_token_for(ids["alice"], lifetime=10)
    b = access_token_for(ids["alice"], lifetime=timedelta(seconds=10))
    assert abs(a["exp"] - b["exp"]) <= 1


async def test_close_mode_refusals_carry_44xx_and_run_no_user_code(server_factory, ids):
    server = server_factory("daphne", env={"ROCKSTAR_TEST_REFUSAL_MODE": "close"})
    for token, path, code in ((alice(ids, lifetime=-30), ANY, 4401), (bob(ids), WRITE, 4403), ("x", ANY, 4401)):
        p = probe_id()
        async with connect(server, f"{path}?probe={p}", subprotocols=["rockstar.bearer", token]) as ws:
            assert ws.subprotocol == "rockstar.bearer"
            with pytest.raises(ClientClosed):
                await ws.recv()
            assert ws.close_code == code
        assert await user_code_ran(server, p) == []


async def test_public_route_accepts_the_marker_and_ignores_the_token(daphne, ids):
    """Browsers fail a handshake whose offered subprotocols were all ignored: a public route
    accepts the marker (never the token) so one page can open every route the same way."""
    token = alice(ids)
    async with connect(daphne, "/ws/echo", subprotocols=["rockstar.bearer", token]) as ws:
        assert ws.subprotocol == "rockstar.bearer"
        await ws.send("hi")
        assert await ws.recv() == "hi"
    async with connect(daphne, "/ws/echo", subprotocols=["something-else"]) as ws:
        assert ws.subprotocol is None  # nothing else is invented


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_a_route_with_refusal_mode_close_refuses_with_close_codes_while_others_keep_statuses(
        kind, request, ids):
    """The demo's /ws/private-browser (refusal_mode="close") and /ws/private (the default, http)."""
    server = request.getfixturevalue(kind)
    headers = {"Authorization": f"Bearer {bob(ids, scopes='chat:read')}"}
    async with connect(server, "/ws/private-browser", additional_headers=headers) as ws:
        with pytest.raises(ClientClosed):
            await asyncio.wait_for(ws.recv(), 30)
        assert ws.close_code == 4403
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server, "/ws/private", additional_headers=headers):
            pass
    assert refused.value.response.status_code == 403
    async with connect(server, "/ws/private-browser") as ws:  # no token at all
        with pytest.raises(ClientClosed):
            await asyncio.wait_for(ws.recv(), 30)
        assert ws.close_code == 4401
