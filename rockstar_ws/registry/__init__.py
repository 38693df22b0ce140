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
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from ..conf import ws_settings
from ..core.redis import RedisConfig, layer_redis, redis_from_config

if TYPE_CHECKING:
    from ..core.context import Context
    from ..engine.server import WebSocketServer

from .local import LocalRegistry
from .records import LIMIT_REASONS, ConnectionRecord, build_snapshot, process_name
from .redis import RedisRegistry, lua_script

__all__ = ["LIMIT_REASONS", "ConnectionRecord", "LocalRegistry", "RedisRegistry", "admit", "build_snapshot",
           "get_registry", "install", "installed_servers", "lua_script", "process_name", "redis_url_from_settings",
           "registry_redis",
           "reset_registry"]

logger = logging.getLogger("rockstar_ws.registry")

Release = Callable[[], Awaitable[None]]


def registry_redis() -> RedisConfig:
    """``REGISTRY_REDIS_URL`` (a URL, or a channels-redis host dict: ``{"address": url}`` or a
    Sentinel master, ``{"sentinels": [(host, port), ...], "master_name": name}``), or the channel
    layer's first host when it is a channels_redis layer, or '' (in-process only).

    Raises ``ImproperlyConfigured`` naming the fix when the dict's shape is wrong."""
    url = ws_settings.REGISTRY_REDIS_URL
    if url is None:
        return layer_redis()
    if isinstance(url, Mapping):
        # Checked now (it connects to nothing): a typo fails at start-up, not at the first handshake.
        redis_from_config(url, setting="ROCKSTAR_WS['REGISTRY_REDIS_URL']")
        if set(url) == {"address"}:
            return str(url["address"])
        return dict(url)  # a Sentinel master, or an address with connection options
    return str(url)


def redis_url_from_settings() -> str:
    """``REGISTRY_REDIS_URL``, or the first host of a channels_redis ``CHANNEL_LAYER``, or ''
    (a Sentinel host has no URL: ``"sentinel:<master name>"`` names it; see :func:`registry_redis`)."""
    config = registry_redis()
    if isinstance(config, str):
        return config
    if "master_name" in config:
        return f"sentinel:{config['master_name']}"
    return str(config["address"])


_registry: LocalRegistry | None = None


def get_registry() -> LocalRegistry:
    """The registry of this process, built from settings on first use."""
    global _registry
    if _registry is None:
        config = registry_redis()
        if config:
            timeout = float(ws_settings.REGISTRY_REDIS_TIMEOUT)
            factory = None
            if not isinstance(config, str):  # a Sentinel master (no URL) or options: a client from the dict
                sentinel = config
                factory = lambda: redis_from_config(  # noqa: E731
                    sentinel, socket_timeout=timeout, socket_connect_timeout=timeout)
            _registry = RedisRegistry(redis_url_from_settings(), prefix=ws_settings.REGISTRY_KEY_PREFIX,
                                      heartbeat=float(ws_settings.REGISTRY_HEARTBEAT),
                                      ttl=float(ws_settings.REGISTRY_TTL), timeout=timeout,
                                      client_factory=factory)
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
        server.on_shutdown(leave)
    return True


async def leave() -> None:
    """The process shuts down: its connections leave the cluster-wide counts at once (cluster
    mode; nothing to do in embedded mode)."""
    if _registry is not None:
        await _registry.leave()


def reset_registry() -> None:
    """Forget the process registry; the next connection builds one from the current settings."""
    global _registry
    _registry = None


ws_settings.on_change(reset_registry, "ROCKSTAR_WS", "CHANNEL_LAYERS")
