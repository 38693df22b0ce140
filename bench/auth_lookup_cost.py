"""What the user lookup of an authenticated handshake costs with the user cache off, without a
server: ``python -m bench.auth_lookup_cost``.

Process CPU time per lookup (both threads) for the lookup rockstar_ws runs now (the lookup
thread: a persistent connection, batches, compiled queries; docs/auth.md) and for the one it ran
before (Channels' ``database_sync_to_async``, one query with an ``Exists`` blacklist subquery,
Django's default ``CONN_MAX_AGE = 0``), one lookup at a time and 16 at once. A migrated SQLite
database in a temporary directory, the bench settings.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup() -> str:
    var = tempfile.mkdtemp(prefix="rockstar-lookup-cost-")
    os.environ.update({"DJANGO_SETTINGS_MODULE": "bench.settings", "ROCKSTAR_VAR_DIR": var})
    os.environ.pop("ROCKSTAR_DB", None)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import django

    django.setup()
    return var


async def _per_lookup(kind: str, user, waves: int, concurrency: int) -> tuple[float, float]:
    from channels.db import database_sync_to_async
    from django.contrib.auth import get_user_model
    from django.db.models import Exists
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    from rockstar_ws.auth.manager import AuthManager
    from rockstar_ws.auth.tokens import access_token_for

    User = get_user_model()

    def before(user_id, jti):  # the lookup as it was: one query per handshake, its own hop
        blacklisted = Exists(BlacklistedToken.objects.filter(token__jti=str(jti)))
        return next(iter(User._default_manager.filter(id=user_id).annotate(_blacklisted=blacklisted)[:1]))

    manager = AuthManager()
    token = manager.validate(str(access_token_for(user)))

    async def one():
        if kind == "before":
            return await database_sync_to_async(before)(user.pk, token["jti"])
        return await manager.get_user(token)

    await asyncio.gather(*(one() for _ in range(concurrency)))  # warm: imports, compiled shapes
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(waves):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    n = waves * concurrency
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def main() -> None:
    var = _setup()
    try:
        _measure()
    finally:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(var, ignore_errors=True)


def _measure() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.test import override_settings

    user, _ = get_user_model().objects.get_or_create(username="bench")
    connections.close_all()
    with override_settings(ROCKSTAR_WS={"AUTH_USER_CACHE_TTL": 0}):
        for concurrency, waves in ((1, 1000), (16, 150)):
            for kind in ("before", "now"):
                cpu, wall = asyncio.run(_per_lookup(kind, user, waves, concurrency))
                print(f"{kind:6s} {concurrency:2d} at once: {cpu:6.0f} µs CPU per lookup ({wall:.0f} µs wall)")


if __name__ == "__main__":
    main()
