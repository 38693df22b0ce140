"""The registry of live connections and the connection limits (docs/connections.md).

Every accepted connection is counted once when its handshake is admitted and once when it ends
(the ``admission`` stage of the handshake pipeline); nothing happens per message. A connection is counted under
``total``, its route label, its tenant, its user and its client IP, and is kept as a
:class:`ConnectionRecord`.

* :class:`LocalRegistry` (embedded default): counters in this process, nothing to install.
* :class:`RedisRegistry` (cluster mode, when Redis is configured): the same counters, plus one
  hash of counters and one hash of records per process in Redis. One heartbeat per process
  (``REGISTRY_HEARTBEAT`` seconds) refreshes their expiry (``REGISTRY_TTL``), so a process that
  dies without cleaning up drops out of every count when its keys expire. Admission checks the
  cluster-wide sums and increments in one Lua script, so limits hold across processes.

If Redis fails, connections are still served (fail open): admission falls back to this
process's counts, the failure is logged at ERROR once per outage, and the next heartbeat that
reaches Redis rewrites this process's state there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import ws_settings

if TYPE_CHECKING:
    from ..core.context import Context
    from ..engine.server import WebSocketServer

from .local import LocalRegistry
from .records import LIMIT_REASONS, ConnectionRecord, build_snapshot, process_name
from .redis import RedisRegistry, lua_script

__all__ = ["LIMIT_REASONS", "ConnectionRecord", "LocalRegistry", "RedisRegistry", "admit", "build_snapshot",
           "get_registry", "install", "installed_servers", "lua_script", "process_name", "redis_url_from_settings",
           "reset_registry"]

logger = logging.getLogger("rockstar_ws.registry")

Release = Callable[[], Awaitable[None]]


def _is_channels_redis(backend: Any) -> bool:
    """True for channels-redis layers and their subclasses (rockstar_ws.layers.RedisChannelLayer)."""
    if "channels_redis" in str(backend):
        return True
    try:
        cls = import_string(backend) if isinstance(backend, str) else backend
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, RedisChannelLayer)


def redis_url_from_settings() -> str:
    """``REGISTRY_REDIS_URL``, or the first host of a channels_redis ``CHANNEL_LAYER``, or ''."""
    url = ws_settings.REGISTRY_REDIS_URL
    if url is not None:
        return str(url)
    layer = (getattr(django_settings, "CHANNEL_LAYERS", {}) or {}).get(ws_settings.CHANNEL_LAYER) or {}
    if not _is_channels_redis(layer.get("BACKEND", "")):
        return ""
    hosts = (layer.get("CONFIG") or {}).get("hosts") or []
    if not hosts:
        return "redis://localhost:6379/0"
    host = hosts[0]
    if isinstance(host, str):
        return host
    if isinstance(host, dict):
        return str(host.get("address") or f"redis://{host.get('host', 'localhost')}:{host.get('port', 6379)}")
    if isinstance(host, (tuple, list)) and len(host) >= 2:
        return f"redis://{host[0]}:{host[1]}"
    raise ImproperlyConfigured(f"Cannot read a Redis URL from CHANNEL_LAYERS host {host!r}; "
                               "set ROCKSTAR_WS['REGISTRY_REDIS_URL'].")


_registry: LocalRegistry | None = None


def get_registry() -> LocalRegistry:
    """The registry of this process, built from settings on first use."""
    global _registry
    if _registry is None:
        url = redis_url_from_settings()
        if url:
            _registry = RedisRegistry(url, prefix=ws_settings.REGISTRY_KEY_PREFIX,
                                      heartbeat=float(ws_settings.REGISTRY_HEARTBEAT),
                                      ttl=float(ws_settings.REGISTRY_TTL),
                                      timeout=float(ws_settings.REGISTRY_REDIS_TIMEOUT))
        else:
            _registry = LocalRegistry()
    return _registry


#: Servers whose connections the process registry counts (see :func:`install`).
installed_servers: list[WebSocketServer] = []


async def admit(ctx: Context) -> Release:
    """The admission check :func:`install` adds: the process registry of the moment admits ``ctx``."""
    return await (_registry or get_registry()).admit(ctx)


def install(server: WebSocketServer) -> bool:
    """Count ``server``'s connections in this process's registry and enforce the limits on its
    handshakes; does nothing (and returns False) when ``LIVE_REGISTRY`` is off."""
    if not ws_settings.LIVE_REGISTRY:
        return False
    if server not in installed_servers:
        installed_servers.append(server)
        server.add_stage(admit, name="admission")
    return True


def reset_registry() -> None:
    """Forget the process registry; the next connection builds one from the current settings."""
    global _registry
    _registry = None


ws_settings.on_change(reset_registry, "ROCKSTAR_WS", "CHANNEL_LAYERS")
