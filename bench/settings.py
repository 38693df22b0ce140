"""Settings every benchmark server shares: the demo project's, with DEBUG off.

``BENCH_ROCKSTAR_WS`` (JSON) is merged into ``ROCKSTAR_WS``, so a row can run rockstar_ws with a
feature off or on (e.g. ``{"LIVE_REGISTRY": false}``) without a new settings module.
``BENCH_REDIS_URL`` switches the channel layer to Redis with a per-run prefix: plain Channels
uses ``channels_redis.core.RedisChannelLayer`` with its defaults, as its users do;
``BENCH_REDIS_LAYER=rockstar`` picks the layer rockstar_ws's demo settings use instead
(``rockstar_ws.layers.RedisChannelLayer``: channels-redis with a waiting pool and a longer read
timeout, ``capacity`` 1000, docs/broadcast.md).
"""

import json
import os

os.environ.setdefault("DJANGO_DEBUG", "0")

from demo_project.settings import *  # noqa: F403
from demo_project.settings import LOGGING, ROCKSTAR_WS

DEBUG = False
# The per-connection message rate limit (100/s by default, docs/protection.md) would cap every echo
# connection by design; plain Channels has none, so the benchmark compares with it off.
# INBOX_SIZE (256 by default) closes a connection whose client sends faster than its handler
# reads: the saturation rows' sender sends 500 messages back to back, and plain Channels has no
# such bound, so the benchmark raises it (idle connections do not pay for it: the inbox grows on use).
# Registry keys in Redis get the run's prefix too (nothing is shared with other users of that Redis).
ROCKSTAR_WS = {**ROCKSTAR_WS, "MESSAGE_RATE": 0, "INBOX_SIZE": 100_000,
               "REGISTRY_KEY_PREFIX": f"{os.environ.get('BENCH_REDIS_PREFIX', 'bench')}:live:",
               **json.loads(os.environ.get("BENCH_ROCKSTAR_WS") or "{}")}

_redis = os.environ.get("BENCH_REDIS_URL", "")
if _redis and os.environ.get("BENCH_REDIS_LAYER") == "rockstar":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "rockstar_ws.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis], "prefix": os.environ.get("BENCH_REDIS_PREFIX", "bench"), "capacity": 1000},
        }
    }
elif _redis:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis], "prefix": os.environ.get("BENCH_REDIS_PREFIX", "bench")},
        }
    }
else:
    # One layer for both apps: rockstar_ws's in-memory layer (channels' own, without the sweep over
    # every channel on each receive, which makes a burst of N connections cost O(N^2); plain
    # Channels' consumers receive from it as from channels' layer, rockstar_ws attaches instead).
    CHANNEL_LAYERS = {"default": {"BACKEND": "rockstar_ws.layers.InMemoryChannelLayer"}}

LOGGING = {**LOGGING, "loggers": {**LOGGING["loggers"],
                                  "rockstar_ws": {"handlers": ["console"], "level": "WARNING", "propagate": False}}}

# Django's default CONN_MAX_AGE (0: a database connection per request, here per authenticated
# handshake); BENCH_CONN_MAX_AGE=60 shows what persistent connections change.
DATABASES = {**DATABASES, "default": {**DATABASES["default"],  # noqa: F405
                                      "CONN_MAX_AGE": int(os.environ.get("BENCH_CONN_MAX_AGE", "0"))}}
