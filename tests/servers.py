"""Real servers for end-to-end tests: daphne, uvicorn or granian processes on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_until(listening, timeout, message=f"server did not listen on {port} within {timeout}s")


class ServerProcess:
    """One ASGI server process serving ``app`` with the test settings."""

    def __init__(self, kind: str = "daphne", *, app: str = "demo_project.asgi:application",
                 env: dict[str, str] | None = None, args: list[str] | None = None,
                 log_dir: Path | None = None, cwd: Path | None = None) -> None:
        self.kind = kind
        self.cwd = cwd or ROOT
        self.app = app
        self.port = free_port()
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1",
                    **(env or {})}
        self.args = args or []
        self.log_path = (log_dir or Path("/tmp")) / f"{kind}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.kind == "daphne":
            return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), *self.args, self.app]
        if self.kind == "uvicorn":
            return [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                    "--lifespan", "off", *self.args, self.app]
        if self.kind == "runserver":  # daphne's runserver, as the demo runs it
            return [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload",
                    f"127.0.0.1:{self.port}", *self.args]
        if self.kind == "granian":
            # One worker (a child process of granian's), no access log: the shape of the other two kinds.
            return [str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(self.port),
                    "--workers", "1", "--no-access-log", *self.args, self.app]
        raise ValueError(f"unknown server kind {self.kind!r}: daphne, uvicorn, granian or runserver")

    def start(self) -> ServerProcess:
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), cwd=self.cwd, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, self.proc)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        if getattr(self, "log", None):
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrivateRedis:
    """A redis-server (or sentinel) of one test only, on a free port: the shared Redis is never
    restarted or flushed."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *head: str) -> PrivateRedis:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", *head, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.tmp), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
