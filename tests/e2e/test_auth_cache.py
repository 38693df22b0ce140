"""AUTH_USER_CACHE_TTL: a short per-process cache of successful user lookups (docs/auth.md).

Off by default (every handshake queries); on, a second handshake with the same token skips the
query, and every refusal still holds: saves of the user and new blacklist entries in this process
clear the cache at once, an expired entry queries again, and a refused lookup is never kept.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from rockstar_ws import AuthManager
from rockstar_ws.auth.manager import clear_user_cache
from rockstar_ws.auth.tokens import access_token_for
from rockstar_ws.core.errors import Deny

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def counted(monkeypatch):
    """An AuthManager whose database lookups are counted."""
    clear_user_cache()
    manager = AuthManager()
    calls: list[tuple] = []
    real = manager._lookup_sync

    def counting(keys):
        calls.extend(keys)  # one entry per lookup (the batch's keys)
        return real(keys)

    monkeypatch.setattr(manager, "_lookup_sync", counting)
    yield manager, calls
    clear_user_cache()


async def _user(name: str):
    from django.contrib.auth import get_user_model

    return await sync_to_async(get_user_model().objects.create_user)(name, password="x")


@override_settings(ROCKSTAR_WS={"AUTH_USER_CACHE_TTL": 0})
async def test_with_the_cache_off_every_lookup_queries(counted):
    manager, calls = counted
    user = await _user("nocache")
    token = manager.validate(str(access_token_for(user)))
    for _ in range(3):
        assert (await manager.get_user(token)).pk == user.pk
    assert len(calls) == 3


async def test_on_by_default_repeated_lookups_query_once(counted):
    manager, calls = counted
    user = await _user("defaultcache")
    token = manager.validate(str(access_token_for(user)))
    for _ in range(3):
        assert (await manager.get_user(token)).pk == user.pk
    assert len(calls) == 1


@override_settings(ROCKSTAR_WS={"AUTH_USER_CACHE_TTL": 30})
async def test_second_lookup_is_cached_and_saves_clear_it(counted):
    manager, calls = counted
    user = await _user("cached")
    token = manager.validate(str(access_token_for(user)))
    first = await manager.get_user(token)
    second = await manager.get_user(token)
    assert len(calls) == 1
    assert first.pk == second.pk == user.pk and first is not second  # each connection its own object
    # Another token (another jti) of the same user is its own entry.
    other = manager.validate(str(access_token_for(user)))
    await manager.get_user(other)
    assert len(calls) == 2
    # Deactivating the user clears the cache: the next handshake queries and is refused.
    user.is_active = False
    await sync_to_async(user.save)()
    with pytest.raises(Deny, match="invalid token"):
        await manager.get_user(token)
    assert len(calls) == 3
    with pytest.raises(Deny):  # a refused lookup is never cached
        await manager.get_user(token)
    assert len(calls) == 4


@override_settings(ROCKSTAR_WS={"AUTH_USER_CACHE_TTL": 30})
async def test_blacklisting_clears_the_cache(counted):
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    manager, calls = counted
    user = await _user("blacklisted")
    raw = str(access_token_for(user))
    token = manager.validate(raw)
    await manager.get_user(token)
    await manager.get_user(token)
    assert len(calls) == 1

    def blacklist() -> None:
        outstanding = OutstandingToken.objects.create(user=user, jti=token["jti"], token=raw,
                                                      expires_at=token.current_time)
        BlacklistedToken.objects.create(token=outstanding)
    await sync_to_async(blacklist)()
    with pytest.raises(Deny) as refused:
        await manager.get_user(token)
    assert "blacklisted" in refused.value.log_detail
    assert len(calls) == 2


@override_settings(ROCKSTAR_WS={"AUTH_USER_CACHE_TTL": 30})
async def test_expired_entries_query_again(counted, monkeypatch):
    import rockstar_ws.auth.manager as auth

    manager, calls = counted
    user = await _user("expiring")
    token = manager.validate(str(access_token_for(user)))
    await manager.get_user(token)
    now = auth.time.monotonic()
    monkeypatch.setattr(auth.time, "monotonic", lambda: now + 31)
    await manager.get_user(token)
    assert len(calls) == 2


async def test_daphne_with_the_cache_reuses_a_lookup_across_handshakes(server_env, server_factory):
    """Through a real daphne: with AUTH_USER_CACHE_TTL on, a token blacklisted from another
    process keeps being admitted until the TTL passes (the documented trade-off); with the cache
    off (tests/e2e/test_auth.py) it is refused at once."""
    import json

    from tests.auth_helpers import blacklist_in_server, probe_id, user_ids, with_token
    from tests.client import connect, recv_json

    ids = user_ids(server_env)
    server = server_factory("daphne", env={"ROCKSTAR_TEST_WS_SETTINGS": json.dumps({"AUTH_USER_CACHE_TTL": 300})})
    token = str(access_token_for(ids["alice"], scopes=["chat:read", "chat:write"], tenant="tenant1"))
    path = "/ws/test/auth/any"
    async with connect(server, with_token(path, token, probe_id())) as ws:
        assert (await recv_json(ws))["user_id"] == str(ids["alice"])
    blacklist_in_server(server_env, token)
    async with connect(server, with_token(path, token, probe_id())) as ws:  # the cached answer
        assert (await recv_json(ws))["user_id"] == str(ids["alice"])
    fresh = str(access_token_for(ids["alice"], scopes=["chat:read"], tenant="tenant1"))
    async with connect(server, with_token(path, fresh, probe_id())) as ws:  # another jti: queried
        assert (await recv_json(ws))["user_id"] == str(ids["alice"])
