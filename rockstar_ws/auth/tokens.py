"""Minting access tokens for WebSocket clients, with SimpleJWT (scripts, tests, demos).

>>> token = access_token_for(user, scopes=["chat:read"], tenant="tenant1")
>>> str(token)  # the JWT to send as ?token=, Authorization: Bearer, or a subprotocol
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

from ..conf import ws_settings

__all__ = ["access_token_for"]


def access_token_for(user: Any, scopes: Iterable[str] | str | None = None, tenant: str | None = None,
                     lifetime: timedelta | float | None = None, **claims: Any) -> AccessToken:
    """A SimpleJWT access token for ``user`` carrying ``scopes`` and ``tenant``.

    ``user`` is a Django user (``AccessToken.for_user``) or the value of its ``USER_ID_FIELD``
    (the primary key by default) for callers without the user object. ``scopes`` go into the
    ``AUTH_SCOPE_CLAIM`` claim as one space-separated string (OAuth 2 style), ``tenant`` into
    ``AUTH_TENANT_CLAIM``. ``lifetime`` (a timedelta or seconds) replaces SimpleJWT's
    ``ACCESS_TOKEN_LIFETIME``; extra keyword arguments become claims (e.g. ``nbf``).
    ``str(token)`` is the signed JWT.
    """
    if hasattr(user, "_meta"):
        token = AccessToken.for_user(user)
    else:
        token = AccessToken()
        token[api_settings.USER_ID_CLAIM] = str(user)
    if scopes is not None:
        names = scopes.split() if isinstance(scopes, str) else [str(s) for s in scopes]
        for name in names:
            if not name or any(c.isspace() for c in name):
                raise ValueError(f"a scope must be a non-empty word without spaces, not {name!r}")
        claim = ws_settings.AUTH_SCOPE_CLAIM or ws_settings.AUTH_SCOPES_CLAIM
        if claim is None:
            raise ValueError("both AUTH_SCOPE_CLAIM and AUTH_SCOPES_CLAIM are None: nowhere to put scopes")
        token[claim] = " ".join(names) if claim == ws_settings.AUTH_SCOPE_CLAIM else names
    if tenant is not None:
        if not ws_settings.AUTH_TENANT_CLAIM:
            raise ValueError("AUTH_TENANT_CLAIM is None: nowhere to put the tenant")
        token[ws_settings.AUTH_TENANT_CLAIM] = str(tenant)
    if lifetime is not None:
        if not isinstance(lifetime, timedelta):
            lifetime = timedelta(seconds=float(lifetime))
        token.set_exp(from_time=token.current_time, lifetime=lifetime)
    for name, value in claims.items():
        token[name] = value
    return token
