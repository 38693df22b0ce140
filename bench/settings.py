"""Settings every benchmark server shares: the demo project's, with DEBUG off.

``BENCH_ROCKSTAR_WS`` (JSON) is merged into ``ROCKSTAR_WS``, so a row can run rockstar_ws with a
feature on (e.g. ``{"REGISTRY": true}`` once the registry lands) without a new settings module.
``BENCH_REDIS_URL`` switches the channel layer to Redis with a per-run prefix.
"""

import json
import os

os.environ.setdefault("DJANGO_DEBUG", "0")

from demo_project.settings import *  # noqa: F403
from demo_project.settings import LOGGING, ROCKSTAR_WS

DEBUG = False
# The per-connection message rate limit (100/s by default, docs/protection.md) would cap every echo
# connection by design; plain Channels has none, so the benchmark compares with it off.
ROCKSTAR_WS = {**ROCKSTAR_WS, "MESSAGE_RATE": 0,
               **json.loads(os.environ.get("BENCH_ROCKSTAR_WS") or "{}")}

_redis = os.environ.get("BENCH_REDIS_URL", "")
if _redis:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis], "prefix": os.environ.get("BENCH_REDIS_PREFIX", "bench")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LOGGING = {**LOGGING, "loggers": {**LOGGING["loggers"],
                                  "rockstar_ws": {"handlers": ["console"], "level": "WARNING", "propagate": False}}}
