"""Authentication: the auth manager (tokens to users and scopes), token refresh on open
connections, the user cache, SimpleJWT tokens and serializers carrying rockstar_ws claims.

``rockstar_ws.auth.AuthManager`` (the ``AUTH_MANAGER`` default) is importable from here.
"""

from .manager import REFRESH_PREFIX, AuthManager, TokenGuard, scopes_from_claims

__all__ = ["REFRESH_PREFIX", "AuthManager", "TokenGuard", "scopes_from_claims"]
