"""A fresh Django project, as ``django-admin startproject mysite`` makes it, in a temporary
directory: what a new user of rockstar_ws starts from (docs tests, set-up checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.servers import BIN, ROOT, ServerProcess

NAME = "mysite"


class FreshProject:
    """``mysite`` with an app ``myapp``; files are edited the way the docs tell a user to."""

    def __init__(self, root: Path) -> None:
        self.root = root
        bare = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(BIN / "django-admin"), "startproject", NAME, str(root)], check=True, env=bare)
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": f"{NAME}.settings", "PYTHONPATH": str(root),
                    "PYTHONUNBUFFERED": "1"}
        for name in ("ROCKSTAR_DB", "ROCKSTAR_VAR_DIR", "REDIS_URL"):
            self.env.pop(name, None)
        # django-admin, not manage.py: the generated settings do not list myapp yet.
        (root / "myapp").mkdir()
        subprocess.run([str(BIN / "django-admin"), "startapp", "myapp", str(root / "myapp")], check=True,
                       cwd=root, env=bare)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def append(self, relative: str, text: str) -> None:
        """Add ``text`` at the end of a file (created when missing)."""
        path = self.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.read_text() if path.exists() else ""
        path.write_text(old + ("\n" if old and not old.endswith("\n") else "") + "\n" + text.rstrip() + "\n")

    def write(self, relative: str, text: str) -> None:
        path = self.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.rstrip() + "\n")

    def manage(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "manage.py", *args], cwd=self.root, env=self.env, input=input,
                              capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def shell(self, code: str) -> str:
        """Run ``code`` in ``manage.py shell``; its stdout."""
        return self.manage("shell", "-v", "0", "-c", code).stdout

    def server(self, kind: str = "daphne", log_dir: Path | None = None) -> ServerProcess:
        return ServerProcess(kind, app=f"{NAME}.asgi:application", env=self.env, log_dir=log_dir or self.root,
                             cwd=self.root)


__all__ = ["NAME", "ROOT", "FreshProject"]
