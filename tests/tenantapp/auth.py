"""A test-only AuthManager: SimpleJWT access tokens, claims in ``ctx.request.claims``.

It stands in for the real one (docs/auth.md) so the tenant tests do not depend on it: token from
``?token=`` or ``Authorization: Bearer``; 401 without or with an invalid token; 403 without one of
the route's scopes (claim ``scopes``, a list). The tenant claim is ``tenant_id``.
"""

from __future__ import annotations

from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from rockstar_ws import AuthManager, Context, Deny


class TestJWTAuthManager(AuthManager):
    async def authenticate(self, ctx: Context) -> None:
        request = ctx.request
        raw = request.query_param("token")
        if not raw:
            header = request.headers.get("authorization", "")
            if header.lower().startswith("bearer "):
                raw = header[7:].strip()
        if not raw:
            raise Deny(401, "token required")
        try:
            token = AccessToken(raw)
        except TokenError:
            raise Deny(401, "invalid token") from None
        claims = dict(token.payload)
        request.claims = claims
        request.access_token = raw
        request.user_id = str(claims.get("user_id")) if claims.get("user_id") is not None else None
        request.scopes = frozenset(claims.get("scopes") or ())
        if request.tenant_id is None and claims.get("tenant_id"):
            request.tenant_id = str(claims["tenant_id"])
        allowed = ctx.route.allowed_scopes
        if allowed:
            if ctx.route.require_all_scopes:
                ok = set(allowed) <= request.scopes
            else:
                ok = not request.scopes.isdisjoint(allowed)
            if not ok:
                raise Deny(403, "insufficient scope")


def make_token(user_id: int | str = 1, tenant_id: str | None = None, scopes: list[str] | None = None) -> str:
    """An access token for tests (signed with the test settings' key)."""
    token = AccessToken()
    token["user_id"] = user_id
    if tenant_id is not None:
        token["tenant_id"] = tenant_id
    if scopes is not None:
        token["scopes"] = scopes
    return str(token)
