"""SimpleJWT serializers whose tokens carry the user's scopes and tenant (docs/auth.md).

SimpleJWT's own ``TokenObtainPairView`` issues tokens without scopes, so every authenticated
route with ``allowed_scopes`` would refuse them (403 insufficient scope). Point SimpleJWT at
these serializers::

    SIMPLE_JWT = {
        "TOKEN_OBTAIN_SERIALIZER": "rockstar_ws.serializers.TokenObtainPairSerializer",
        "TOKEN_REFRESH_SERIALIZER": "rockstar_ws.serializers.TokenRefreshSerializer",
    }

Scopes come from ``ROCKSTAR_WS["TOKEN_SCOPES"]`` (by default :func:`scopes_from_permissions`,
which maps permissions and groups to scopes with ``ROCKSTAR_WS["SCOPE_MAP"]``), the tenant from
``ROCKSTAR_WS["TOKEN_TENANT"]`` (no default: the tenant claim admits a token to a tenant's
routes, so only the project can say which tenant a user belongs to).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, Token

from ..conf import ws_settings

__all__ = ["TokenObtainPairSerializer", "TokenRefreshSerializer", "add_ws_claims", "scopes_from_permissions"]

GROUP_PREFIX = "group:"


def scopes_from_permissions(user: Any, request: Any = None) -> list[str]:
    """The default ``TOKEN_SCOPES`` hook: the scopes ``SCOPE_MAP`` gives the user's permissions
    (``"app_label.codename"`` keys; a superuser has them all) and groups (``"group:<name>"`` keys),
    sorted and without duplicates."""
    scope_map = ws_settings.SCOPE_MAP
    if not scope_map:
        return []
    groups = set(user.groups.values_list("name", flat=True)) if hasattr(user, "groups") else set()
    found: set[str] = set()
    for key, scopes in scope_map.items():
        # has_perm, not a lookup in get_all_permissions(): it asks every auth backend and
        # answers True for an active superuser, as Django's own permission checks do.
        held = key[len(GROUP_PREFIX):] in groups if key.startswith(GROUP_PREFIX) else user.has_perm(key)
        if held:
            found.update([scopes] if isinstance(scopes, str) else scopes)
    return sorted(found)


def _hook(name: str) -> Any:
    return getattr(ws_settings, name)


def _scope_names(value: Any) -> list[str]:
    names = value.split() if isinstance(value, str) else [str(s) for s in (value or ())]
    for name in names:
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"TOKEN_SCOPES returned {name!r}: a scope is a non-empty word without spaces")
    return names


def add_ws_claims(token: Token, user: Any, request: Any = None, *, tenant: bool = True) -> Token:
    """Put the scopes and (``tenant=True``) the tenant of ``user``, from the ``TOKEN_SCOPES`` and
    ``TOKEN_TENANT`` hooks, into ``token``, in the claims rockstar_ws reads (``AUTH_SCOPE_CLAIM``
    or ``AUTH_SCOPES_CLAIM``, ``AUTH_TENANT_CLAIM``). No scopes: no scope claim."""
    scopes_hook, tenant_hook = _hook("TOKEN_SCOPES"), (_hook("TOKEN_TENANT") if tenant else None)
    scopes: Iterable[str] = _scope_names(scopes_hook(user, request)) if scopes_hook else []
    if scopes:
        if ws_settings.AUTH_SCOPE_CLAIM:
            token[ws_settings.AUTH_SCOPE_CLAIM] = " ".join(scopes)
        elif ws_settings.AUTH_SCOPES_CLAIM:
            token[ws_settings.AUTH_SCOPES_CLAIM] = list(scopes)
    tenant_id = tenant_hook(user, request) if tenant_hook else None
    if tenant_id and ws_settings.AUTH_TENANT_CLAIM:
        token[ws_settings.AUTH_TENANT_CLAIM] = str(tenant_id)
    return token


class TokenObtainPairSerializer(jwt_serializers.TokenObtainPairSerializer):
    """SimpleJWT's pair serializer; both tokens carry the user's scopes and tenant.

    They are set on the refresh token: SimpleJWT copies a refresh token's claims into the access
    tokens it makes from it, so ``TokenRefreshView`` hands out the same grants.
    """

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """SimpleJWT's checks of the credentials, then a pair with the user's scopes and tenant."""
        # SimpleJWT's get_token is a classmethod without the request, which the tenant hook needs.
        data = super(jwt_serializers.TokenObtainPairSerializer, self).validate(attrs)
        user = self.user
        if user is None:  # SimpleJWT's validate() raised already; this keeps the type checker honest
            raise AuthenticationFailed("No active account found with the given credentials")
        refresh = add_ws_claims(self.get_token(user), user, self.context.get("request"))
        data["refresh"] = str(refresh)
        data["access"] = str(refresh.access_token)  # type: ignore[attr-defined]  # get_token() makes a RefreshToken
        if api_settings.UPDATE_LAST_LOGIN:
            from django.contrib.auth.models import update_last_login

            update_last_login(None, user)  # type: ignore[arg-type]  # Django's own callers pass None too
        return data


class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    """SimpleJWT's refresh serializer; the new access token's scopes are read again from the
    user, so a permission taken away reaches clients within one access-token lifetime. The
    tenant stays the one of the refresh token (never re-read from where the refresh is asked)."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """SimpleJWT's refresh (rotation and blacklist included), then the current scopes."""
        data = super().validate(attrs)
        access = AccessToken(data["access"])  # type: ignore[arg-type]  # the stubs omit str, what SimpleJWT parses
        user_id = access.payload.get(api_settings.USER_ID_CLAIM)
        user = get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
        if user is None:
            return data
        for claim in (ws_settings.AUTH_SCOPE_CLAIM, ws_settings.AUTH_SCOPES_CLAIM):
            if claim and claim in access.payload:
                del access[claim]
        add_ws_claims(access, user, self.context.get("request"), tenant=False)
        data["access"] = str(access)
        if "refresh" in data:
            refresh = RefreshToken(data["refresh"])  # type: ignore[arg-type]  # as above
            for claim in (ws_settings.AUTH_SCOPE_CLAIM, ws_settings.AUTH_SCOPES_CLAIM):
                if claim and claim in refresh.payload:
                    del refresh[claim]
            add_ws_claims(refresh, user, self.context.get("request"), tenant=False)
            data["refresh"] = str(refresh)
        return data
