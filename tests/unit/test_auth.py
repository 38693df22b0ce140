"""Auth pieces without a server: settings, system checks, claims, the token helper, ws_token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken

from rockstar_ws import AuthManager, WebSocketServer
from rockstar_ws.auth.manager import REFRESH_PREFIX, scopes_from_claims
from rockstar_ws.auth.tokens import access_token_for
from rockstar_ws.checks import check_auth


def test_session_source_without_origins_refuses_to_start():
    with pytest.raises(ImproperlyConfigured, match="AUTH_SESSION_ORIGINS"):
        AuthManager(session=True)
    with override_settings(ROCKSTAR_WS={"AUTH_SESSION": True}):
        with pytest.raises(ImproperlyConfigured, match="origin check"):
            _ = WebSocketServer().auth_manager
        assert [e.id for e in check_auth()] == ["rockstar_ws.E010"]
    with override_settings(ROCKSTAR_WS={"AUTH_SESSION": True, "AUTH_SESSION_ORIGINS": ["https://app.example.com"]}):
        assert check_auth() == []
        assert AuthManager().session_origins == ("https://app.example.com",)


def test_checks_catch_auth_settings_of_the_wrong_type():
    with override_settings(ROCKSTAR_WS={"AUTH_SESSION_ORIGINS": "https://a.example", "AUTH_QUERY_PARAM": ""}):
        assert {e.id for e in check_auth()} == {"rockstar_ws.E011", "rockstar_ws.E012"}


def test_manager_per_server_and_in_settings():
    mine = AuthManager(query_param=None, subprotocol="my.bearer")
    assert WebSocketServer(auth_manager=mine).auth_manager is mine
    assert (mine.query_param, mine.subprotocol) == (None, "my.bearer")

    with override_settings(ROCKSTAR_WS={"AUTH_MANAGER": f"{__name__}.CustomManager"}):
        assert type(WebSocketServer().auth_manager) is CustomManager
    assert type(WebSocketServer().auth_manager) is AuthManager


class CustomManager(AuthManager):
    """Named in a settings override above."""


@pytest.mark.parametrize(("claims", "scopes"), [
    ({"scope": "a b  c"}, {"a", "b", "c"}),
    ({"scopes": ["a", "b"]}, {"a", "b"}),
    ({"scope": "a", "scopes": ["b"]}, {"a", "b"}),
    ({"scope": ["a", 3, None]}, {"a"}),
    ({"scope": 5, "scopes": {"a": 1}}, set()),
    ({}, set()),
])
def test_scopes_from_claims(claims, scopes):
    assert scopes_from_claims(claims) == frozenset(scopes)


def test_claim_names_are_configurable():
    assert scopes_from_claims({"perms": "x y", "scope": "z"}, "perms", None) == {"x", "y"}
    with override_settings(ROCKSTAR_WS={"AUTH_SCOPE_CLAIM": "perms", "AUTH_TENANT_CLAIM": "org"}):
        token = access_token_for(7, scopes=["x", "y"], tenant="acme")
        assert (token["perms"], token["org"]) == ("x y", "acme")
        m = AuthManager()
        assert m.scopes_for(token.payload) == {"x", "y"} and m.tenant_for(token.payload) == "acme"


def test_access_token_helper_is_a_simplejwt_access_token():
    token = access_token_for(42, scopes="chat:read chat:write", tenant="t1", lifetime=timedelta(seconds=30))
    parsed = AccessToken(str(token))  # SimpleJWT validates it
    assert (parsed["user_id"], parsed["scope"], parsed["tenant_id"], parsed["token_type"]) == (
        "42", "chat:read chat:write", "t1", "access")
    assert 25 <= parsed["exp"] - parsed["iat"] <= 31
    with pytest.raises(ValueError):
        access_token_for(42, scopes=["two words"])


def test_refresh_prefix_matches_browser_and_python_json():
    import json

    assert json.dumps({"rockstar.refresh": "t"}).startswith(REFRESH_PREFIX)
    assert json.dumps({"rockstar.refresh": "t"}, separators=(",", ":")).startswith(REFRESH_PREFIX)


@pytest.mark.django_db
def test_ws_token_command(capsys):
    from django.contrib.auth import get_user_model

    User = get_user_model()
    user = User.objects.create_user("carol", password="x")
    call_command("ws_token", "carol", "--scope", "a b", "--scope", "c", "--tenant", "t9", "--lifetime", "60")
    token = AccessToken(capsys.readouterr().out.strip())
    assert (token["user_id"], token["scope"], token["tenant_id"]) == (str(user.pk), "a b c", "t9")
    with pytest.raises(CommandError, match="no user"):
        call_command("ws_token", "nobody")
    with pytest.raises(CommandError, match="positive"):
        call_command("ws_token", "carol", "--lifetime", "0")
    user.is_active = False
    user.save()
    with pytest.raises(CommandError, match="inactive"):
        call_command("ws_token", "carol")


@pytest.mark.django_db(transaction=True)
async def test_host_tenant_is_kept_and_token_tenant_fills_a_blank():
    """The token's tenant claim sets request.tenant_id only when the host resolved none; the raw
    claims stay in request.claims for tenant resolution to compare."""
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    from rockstar_ws.core.context import Context, Request
    from rockstar_ws.core.routing import Route

    user = await sync_to_async(get_user_model().objects.create_user)("dave", password="x")
    token = str(access_token_for(user.pk, scopes="s", tenant="tok-tenant"))

    async def handler(ctx, conn):  # never runs here
        pass

    route = Route(path="/x", handler=handler, authenticated=True, allowed_scopes=("s",))
    server = WebSocketServer()
    for host_tenant, expected in (("host-tenant", "host-tenant"), (None, "tok-tenant")):
        scope = {"type": "websocket", "path": "/x", "headers": [(b"authorization", f"Bearer {token}".encode())]}
        request = Request.from_scope(scope, "example.com")
        request.tenant_id = host_tenant
        ctx = Context(request, scope, server, route)
        await AuthManager().authenticate(ctx)
        assert request.tenant_id == expected
        assert request.claims["tenant_id"] == "tok-tenant"
        assert (request.user_id, ctx.user.username, request.scopes) == (str(user.pk), "dave", frozenset({"s"}))
