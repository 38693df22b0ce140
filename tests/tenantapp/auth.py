"""Tokens for the tenant tests, minted with rockstar_ws's own helper (validated by the real AuthManager)."""

from __future__ import annotations

from rockstar_ws.auth.tokens import access_token_for


def make_token(user_id: int | str = 1, tenant_id: str | None = None, scopes: list[str] | None = None) -> str:
    """An access token for tests (signed with the test settings' key)."""
    return str(access_token_for(user_id, scopes=scopes, tenant=tenant_id))
