"""The Redis plumbing the live registry, presence and pub/sub history share (redis-py is imported
on first use): clients from a URL or a channels-redis host dict (Sentinel too), and the Redis of the
channel layer's first host."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import ws_settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisConfig", "client_for", "close_client", "is_channels_redis", "layer_redis", "loop_task",
           "redis_from_config",
           "text", "waiting_client"]

#: A Redis to connect to: a URL, or a channels-redis host dict (``{"address": url}`` or
#: ``{"sentinels": [(host, port), ...], "master_name": name}``).
RedisConfig = str | Mapping[str, object]


def waiting_client(url: str, timeout: float, max_connections: int = 32) -> Any:
    """An asyncio Redis client whose pool makes a burst wait for a free connection (up to
    ``timeout`` seconds) instead of failing with ``MaxConnectionsError``, as redis-py's plain pool
    does when it runs out; every call also times out after ``timeout`` seconds."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout,
        socket_timeout=timeout, socket_connect_timeout=timeout)
    return aioredis.Redis(connection_pool=pool)


def client_for(url: str, timeout: float, factory: Callable[[], Any] | None = None) -> Any:
    """``factory()`` when given (a Sentinel master, say), else :func:`waiting_client` of ``url``."""
    return factory() if factory is not None else waiting_client(url, timeout)


def text(value: Any) -> str:
    """A Redis reply (bytes, or str with ``decode_responses``) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def loop_task(task: asyncio.Task[None] | None, owner: asyncio.AbstractEventLoop | None,
              start: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    """``task`` while it runs on the running loop (which must be ``owner``, the loop of the
    client it uses), else a new task of ``start()``: a heartbeat survives a loop that ended."""
    if task is None or task.done() or owner is not asyncio.get_running_loop():
        return asyncio.ensure_future(start())
    return task


async def close_client(client: Any) -> None:
    """Close a client made by :func:`waiting_client`; a connection already gone is closed anyway."""
    try:
        await client.aclose()
    except Exception:
        pass


def redis_from_config(config: RedisConfig, *, setting: str = "Redis", **defaults: object) -> Redis:
    """A ``redis.asyncio.Redis`` client from a URL or a channels-redis host dict (Sentinel too).

    ``defaults`` are connection options applied unless the config sets them (timeouts, ...);
    ``setting`` names the setting in error messages. A
    URL gets a blocking pool of ``max_connections`` (100) that waits up to ``timeout`` (10 s).
    Raises ``ImproperlyConfigured`` naming the fix when the shape is wrong.
    """
    from redis import asyncio as aioredis
    from redis.asyncio.sentinel import Sentinel

    if isinstance(config, str):
        if not config.startswith(("redis://", "rediss://", "unix://")):
            raise ImproperlyConfigured(
                f"{setting} URL must start with redis://, rediss:// or unix://, got {config!r}")
        options = {"max_connections": 100, "timeout": 10.0, **defaults}
        # Blocking: a burst of appends waits for a free connection instead of failing with
        # redis-py's MaxConnectionsError (see rockstar_ws/layers.py).
        pool = aioredis.BlockingConnectionPool.from_url(config, **options)
        return aioredis.Redis(connection_pool=pool)
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(
            f"{setting} must be a URL ('redis://host:6379/0') or a dict: {{'address': url}} or "
            f"{{'sentinels': [(host, port), ...], 'master_name': name}}; got {type(config).__name__}")
    options = {**defaults, **config}
    if "address" in options:
        if "sentinels" in options or "master_name" in options:
            raise ImproperlyConfigured(f"{setting}: give either 'address' or 'sentinels' + 'master_name', not both")
        address = options.pop("address")
        if not isinstance(address, str):
            raise ImproperlyConfigured(f"{setting} 'address' must be a URL string, got {address!r}")
        return redis_from_config(address, setting=setting, **options)
    if "sentinels" not in options or "master_name" not in options:
        raise ImproperlyConfigured(
            f"{setting} dict needs 'address' (a URL) or both 'sentinels' (a list of (host, port)) and "
            f"'master_name'; got keys {sorted(config)}")
    sentinels = options.pop("sentinels")
    master_name = options.pop("master_name")
    sentinel_kwargs = options.pop("sentinel_kwargs", None)
    if not isinstance(master_name, str) or not master_name:
        raise ImproperlyConfigured(f"{setting} 'master_name' must be a non-empty string, got {master_name!r}")
    pairs: list[tuple[str, int]] = []
    if not isinstance(sentinels, Sequence) or isinstance(sentinels, str) or not sentinels:
        raise ImproperlyConfigured(f"{setting} 'sentinels' must be a non-empty list of (host, port) pairs")
    for item in sentinels:
        if (not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2
                or not isinstance(item[0], str) or isinstance(item[1], bool) or not isinstance(item[1], int)):
            raise ImproperlyConfigured(
                f"{setting} 'sentinels' entries must be (host, port) pairs like ('10.0.0.1', 26379), got {item!r}")
        pairs.append((item[0], item[1]))
    if sentinel_kwargs is not None and not isinstance(sentinel_kwargs, Mapping):
        raise ImproperlyConfigured(f"{setting} 'sentinel_kwargs' must be a dict of connection options")
    sentinel = Sentinel(
        pairs, sentinel_kwargs=dict(sentinel_kwargs) if sentinel_kwargs else None, **options)
    return cast("Redis", sentinel.master_for(master_name))


def is_channels_redis(backend: Any) -> bool:
    """True for channels-redis layers and their subclasses (rockstar_ws.layers.RedisChannelLayer)."""
    if "channels_redis" in str(backend):
        return True
    try:
        cls = import_string(backend) if isinstance(backend, str) else backend
        from channels_redis.core import RedisChannelLayer
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, RedisChannelLayer)


def layer_redis() -> RedisConfig:
    """The Redis of ``CHANNEL_LAYER``'s first host when it is a channels_redis layer, else '': a
    URL, or the host dict itself for a Sentinel host (it has no URL)."""
    layer = (getattr(django_settings, "CHANNEL_LAYERS", {}) or {}).get(ws_settings.CHANNEL_LAYER) or {}
    if not is_channels_redis(layer.get("BACKEND", "")):
        return ""
    hosts = (layer.get("CONFIG") or {}).get("hosts") or []
    if not hosts:
        return "redis://localhost:6379/0"
    host = hosts[0]
    if isinstance(host, str):
        return host
    if isinstance(host, dict):
        if "sentinels" in host:
            return dict(host)
        return str(host.get("address") or f"redis://{host.get('host', 'localhost')}:{host.get('port', 6379)}")
    if isinstance(host, (tuple, list)) and len(host) >= 2:
        return f"redis://{host[0]}:{host[1]}"
    raise ImproperlyConfigured(f"Cannot read a Redis URL from CHANNEL_LAYERS host {host!r}; "
                               "set ROCKSTAR_WS['REGISTRY_REDIS_URL'].")
