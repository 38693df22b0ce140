"""The demo's grants: which scopes and tenant a user's tokens carry (read by the token views)."""

from django.conf import settings
from django.db import models


class DemoGrant(models.Model):
    """Scopes (space-separated, OAuth 2 style) and tenant that ``/api/token/`` puts into a user's tokens."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="demo_grant")
    scopes = models.CharField(max_length=500, blank=True, default="",
                              help_text="Space-separated scopes, e.g. 'chat:read chat:write'.")
    tenant = models.CharField(max_length=100, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.user}: {self.scopes or '-'} @ {self.tenant or '-'}"
