"""Shared by the pub/sub benchmarks: a migrated database and daphne processes on Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess  # noqa: E402


def server_env(redis_url: str) -> dict[str, str]:
    """Environment of the benchmark's servers: a migrated SQLite file and a Redis key prefix of the run."""
    var = tempfile.mkdtemp(prefix="psbench-")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "ROCKSTAR_VAR_DIR": var,
           "REDIS_URL": redis_url, "ROCKSTAR_TEST_PREFIX": f"psb{uuid.uuid4().hex[:8]}",
           "ROCKSTAR_LOG_LEVEL": "WARNING",
           # A publisher with commands in flight sends far above the default 100 messages/s.
           "ROCKSTAR_TEST_WS_SETTINGS": '{"MESSAGE_RATE": 0, "HANDSHAKE_RATE": 0}'}
    env.pop("ROCKSTAR_DB", None)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True)
    return env


def start(env: dict[str, str]) -> ServerProcess:
    server = ServerProcess("daphne", env=env, log_dir=Path(env["ROCKSTAR_VAR_DIR"]))
    return server.start()


def cleanup(redis_url: str, env: dict[str, str]) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(env["ROCKSTAR_TEST_PREFIX"] + "*"):
        r.delete(key)
