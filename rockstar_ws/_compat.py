"""Old module paths of rockstar_ws (before the package layout of docs/architecture.md).

``import rockstar_ws.upgrader`` keeps working and gives the module that now holds the code
(``rockstar_ws.limits.upgrader``), the same module object, so state is never duplicated. One
finder instead of a shim file per old path: a shim would be a module of its own, in no layer.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

#: old dotted path -> where the module lives now
MOVED: dict[str, str] = {
    "rockstar_ws.asgi_servers": "rockstar_ws.servers.bridges",
    "rockstar_ws.connection": "rockstar_ws.core.connection",
    "rockstar_ws.consumer": "rockstar_ws.engine.consumer",
    "rockstar_ws.context": "rockstar_ws.core.context",
    "rockstar_ws.errors": "rockstar_ws.core.errors",
    "rockstar_ws.guard": "rockstar_ws.limits.guard",
    "rockstar_ws.heartbeat": "rockstar_ws.engine.heartbeat",
    "rockstar_ws.live_views": "rockstar_ws.ops.live_views",
    "rockstar_ws.loading": "rockstar_ws.engine.loading",
    "rockstar_ws.logsafe": "rockstar_ws.core.logsafe",
    "rockstar_ws.messages": "rockstar_ws.core.messages",
    "rockstar_ws.metrics": "rockstar_ws.ops.metrics",
    "rockstar_ws.outage": "rockstar_ws.core.outage",
    "rockstar_ws.precheck": "rockstar_ws.handshake.precheck",
    "rockstar_ws.ratelimit": "rockstar_ws.limits.ratelimit",
    "rockstar_ws.refusals": "rockstar_ws.servers.refusals",
    "rockstar_ws.routing": "rockstar_ws.core.routing",
    "rockstar_ws.serializers": "rockstar_ws.auth.serializers",
    "rockstar_ws.server": "rockstar_ws.engine.server",
    "rockstar_ws.shutdown": "rockstar_ws.servers.shutdown",
    "rockstar_ws.stats": "rockstar_ws.engine.stats",
    "rockstar_ws.tokens": "rockstar_ws.auth.tokens",
    "rockstar_ws.upgrader": "rockstar_ws.limits.upgrader",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        # The target module ran already; importing must not run it again under the old name.
        pass


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Answers imports of the old paths in :data:`MOVED` with the modules' new homes."""

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
