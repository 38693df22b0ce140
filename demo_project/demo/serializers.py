"""The demo's ``/api/token/`` serializer: SimpleJWT's pair, plus the user's scopes and tenant."""

from typing import Any

from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.tokens import RefreshToken

from rockstar_ws.conf import ws_settings

from .models import DemoGrant


class DemoTokenObtainPairSerializer(TokenObtainPairSerializer):
    """Tokens carry ``scope`` and ``tenant_id`` from the user's :class:`DemoGrant`.

    They are set on the refresh token, so ``/api/token/refresh/`` (which copies a refresh
    token's claims into the new access token) hands out access tokens with the same grants.
    """

    @classmethod
    def get_token(cls, user: Any) -> RefreshToken:
        token = super().get_token(user)
        grant = DemoGrant.objects.filter(user=user).first()
        if grant is not None:
            if grant.scopes and ws_settings.AUTH_SCOPE_CLAIM:
                token[ws_settings.AUTH_SCOPE_CLAIM] = " ".join(grant.scopes.split())
            if grant.tenant and ws_settings.AUTH_TENANT_CLAIM:
                token[ws_settings.AUTH_TENANT_CLAIM] = grant.tenant
        return token
