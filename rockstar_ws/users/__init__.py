"""Per-user delivery and revocation that reaches open connections (docs/users.md).

* :mod:`.delivery`: ``server.send_to_user()`` / ``server.disconnect_user()`` (and their sync
  twins), one channel-layer message per process through the process control group.
* :mod:`.revocation`: Django signals that close a user's connections when the user is
  deactivated or deleted (4403), changes password (4401), or has an access token blacklisted
  (4401, that token's connections only).
"""

from .delivery import (
    PASSWORD_CHANGED_CLOSE_CODE,
    TOKEN_REVOKED_CLOSE_CODE,
    USER_INACTIVE_CLOSE_CODE,
    UserDelivery,
    disconnect_user,
    install,
    send_to_user,
)
from .revocation import connect_signals, revoke

__all__ = [
    "PASSWORD_CHANGED_CLOSE_CODE",
    "TOKEN_REVOKED_CLOSE_CODE",
    "USER_INACTIVE_CLOSE_CODE",
    "UserDelivery",
    "connect_signals",
    "disconnect_user",
    "install",
    "revoke",
    "send_to_user",
]
