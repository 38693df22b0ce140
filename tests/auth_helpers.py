"""Helpers of the auth tests: users of the server processes' database, and token minting.

The server processes use their own SQLite file (the ``server_env`` fixture, with the demo data);
the test process mints tokens with the same SECRET_KEY (tests.settings) for those users' ids.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

from tests.servers import ROOT


def server_db(server_env: dict[str, str]) -> Path:
    return Path(server_env["ROCKSTAR_VAR_DIR"]) / "db.sqlite3"


def user_ids(server_env: dict[str, str]) -> dict[str, int]:
    """username -> id of the users in the server processes' database."""
    with sqlite3.connect(server_db(server_env)) as db:
        return dict(db.execute("SELECT username, id FROM auth_user"))


def manage(server_env: dict[str, str], *args: str) -> str:
    """Run manage.py against the server processes' database; its stdout."""
    env = {**__import__("os").environ, **server_env}
    env.pop("ROCKSTAR_DB", None)
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env,
                          check=True, capture_output=True, text=True)
    return done.stdout


def server_shell(server_env: dict[str, str], code: str) -> str:
    """Run Python code in a Django shell of the server processes' database; its stdout."""
    return manage(server_env, "shell", "-c", code)


def ensure_inactive_user(server_env: dict[str, str]) -> int:
    """An inactive user ``dormant`` in the server database; its id."""
    out = server_shell(server_env, (
        "from django.contrib.auth import get_user_model\n"
        "u, _ = get_user_model().objects.get_or_create(username='dormant')\n"
        "u.is_active = False; u.save(); print(u.pk)\n"))
    return int(out.strip().splitlines()[-1])


def blacklist_in_server(server_env: dict[str, str], token: str) -> None:
    """Blacklist an access token's jti in the server database (SimpleJWT's token_blacklist)."""
    server_shell(server_env, (
        "from rest_framework_simplejwt.tokens import AccessToken\n"
        "from rest_framework_simplejwt.token_blacklist.models import OutstandingToken, BlacklistedToken\n"
        "from rest_framework_simplejwt.utils import datetime_from_epoch\n"
        f"t = AccessToken({token!r})\n"
        "o, _ = OutstandingToken.objects.get_or_create(jti=t['jti'], defaults={'token': str(t), "
        "'expires_at': datetime_from_epoch(t['exp'])})\n"
        "BlacklistedToken.objects.get_or_create(token=o)\n"))


def probe_id() -> str:
    return uuid.uuid4().hex[:12]


def with_token(path: str, token: str, probe: str) -> str:
    """``path?token=...&probe=...`` (the query source)."""
    return f"{path}?token={quote(token, safe='')}&probe={probe}"


def handshake_log_free_of(output: str, secret: str) -> bool:
    """True when the server's log never shows ``secret`` (a token) in any form."""
    return secret not in output and quote(secret, safe="") not in output


def dumps(obj: object) -> str:
    return json.dumps(obj)
