#!/usr/bin/env python3
"""One entry point for a fresh clone: ``python3 run.py demo`` and ``python3 run.py test``.

Usage: python3 run.py demo [--redis] [ADDRESS]
       python3 run.py test [PYTEST ARGUMENTS]

* ``demo``: virtualenv, install, migrate, demo users, then the server on ADDRESS (default
  127.0.0.1:8000; e.g. ``0.0.0.0:8000`` or ``8080``), daphne through ``manage.py runserver``.
  ``--redis`` uses the local Redis at 127.0.0.1:6379 (``REDIS_URL``) instead of the embedded
  in-memory channel layer.
* ``test``: virtualenv, install, Redis up (started if installed but stopped), ``redis-sentinel``
  and Chromium present (installed from Debian's packages when running as root; the Sentinel tests
  start their own master, replica and sentinel), ``ruff check``, ``lint-imports``,
  ``mypy rockstar_ws``, then pytest.
  Extra arguments go to pytest. Under ``CI=true`` nothing that needs Redis or Chromium is skipped.

Only Python 3.11 (or newer) is needed to start; everything else is installed into ``.venv``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
               "--save", "", "--appendonly", "no"]


def say(msg: str) -> None:
    print(f"[run.py] {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def ensure_venv() -> None:
    if not PY.exists():
        say(f"creating virtualenv in {VENV}")
        run([sys.executable, "-m", "venv", str(VENV)])
    stamp = VENV / ".rockstar-installed"
    digest = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in ("requirements.txt", "setup.cfg"))).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    say("installing requirements (first run takes a minute)")
    run([str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade", "pip"])
    run([str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "requirements.txt", "-e", "."],
        cwd=ROOT)
    stamp.write_text(digest)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def apt_install(*packages: str) -> bool:
    if not (is_root() and shutil.which("apt-get")):
        return False
    say(f"installing {' '.join(packages)} from Debian's packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, stdout=subprocess.DEVNULL)
    return subprocess.run(["apt-get", "install", "-y", "-qq", *packages], env=env, check=False,
                          stdout=subprocess.DEVNULL).returncode == 0


def ensure_redis() -> bool:
    if port_open("127.0.0.1", 6379):
        return True
    if not shutil.which("redis-server"):
        apt_install("redis-server")
    if shutil.which("redis-server"):
        say("starting redis-server on 127.0.0.1:6379")
        logdir = Path("/var/log/redis") if is_root() else ROOT / "var"
        logdir.mkdir(parents=True, exist_ok=True)
        workdir = Path("/var/lib/redis") if Path("/var/lib/redis").is_dir() else ROOT / "var"
        workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run([*REDIS_START, "--dir", str(workdir), "--logfile", str(logdir / "ci.log")], check=False)
        for _ in range(50):
            if port_open("127.0.0.1", 6379):
                return True
            time.sleep(0.1)
    return False


def ensure_sentinel() -> bool:
    """The binaries of the Sentinel tests (tests/sentinel.py starts its own master, replica and
    sentinel on free ports from them; nothing is started here)."""
    if not shutil.which("redis-sentinel"):
        apt_install("redis-sentinel")
    return bool(shutil.which("redis-server") and shutil.which("redis-sentinel"))


def ensure_chromium() -> bool:
    if shutil.which("chromium"):
        return True
    apt_install("chromium")
    return bool(shutil.which("chromium"))


def cmd_demo(args: list[str]) -> None:
    ensure_venv()
    env = dict(os.environ)
    if "--redis" in args:
        args.remove("--redis")
        if not ensure_redis():
            sys.exit("--redis: no Redis on 127.0.0.1:6379 and none could be started")
        env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    manage = [str(PY), "manage.py"]
    run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env)
    run([*manage, "demo_setup"], cwd=ROOT, env=env)
    addr = args[0] if args else "127.0.0.1:8000"
    say(f"demo on http://{addr}/  (admin: http://{addr}/admin/, users in README.md); Ctrl-C stops it")
    os.chdir(ROOT)
    os.execve(str(PY), [str(PY), "manage.py", "runserver", addr], env)


def cmd_test(args: list[str]) -> None:
    ensure_venv()
    ci = os.environ.get("CI", "").lower() == "true"
    redis_ok = ensure_redis()
    sentinel_ok = ensure_sentinel()
    chromium_ok = ensure_chromium()
    if ci and not redis_ok:
        sys.exit("CI: Redis is not reachable on 127.0.0.1:6379 and could not be started; Redis tests cannot run")
    if ci and not sentinel_ok:
        sys.exit("CI: redis-server and redis-sentinel are not installed and could not be installed; "
                 "the Sentinel failover tests cannot run")
    if ci and not chromium_ok:
        sys.exit("CI: Chromium is not installed and could not be installed; browser tests cannot run")
    # Each step fails the run: style (ruff), the layers of docs/architecture.md (import-linter,
    # which also proves there is no import cycle), types (mypy with django-stubs), then behaviour.
    for label, cmd in (("ruff check", ["ruff", "check", "."]), ("lint-imports", ["lint-imports"]),
                       ("mypy rockstar_ws", ["mypy", "rockstar_ws"])):
        say(label)
        run([str(VENV / "bin" / cmd[0]), *cmd[1:]], cwd=ROOT)
    say("pytest")
    rc = subprocess.run([str(PY), "-m", "pytest", *args], cwd=ROOT).returncode
    sys.exit(rc)


def main() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py may be started by an older python3
        sys.exit("rockstar_ws needs Python 3.11 or newer (python3.11 run.py ...)")
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        sys.exit(__doc__)
    {"demo": cmd_demo, "test": cmd_test}[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
