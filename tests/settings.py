"""Test settings: the demo project plus a test app with probe routes."""

import json
import os
from typing import Any

from demo_project.settings import *  # noqa: F403
from demo_project.settings import INSTALLED_APPS, ROCKSTAR_WS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
ROCKSTAR_WS = {
    **ROCKSTAR_WS,
    "HANDLER_CLOSE_TIMEOUT": float(os.environ.get("ROCKSTAR_TEST_HANDLER_CLOSE_TIMEOUT", "2")),
    "REFUSAL_MODE": os.environ.get("ROCKSTAR_TEST_REFUSAL_MODE", "http"),
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A channel layer through Redis Sentinel (tests/sentinel.py): ``[[host, port], ...]`` of the
# sentinels and the master's name; channels-redis resolves the master through them.
if os.environ.get("ROCKSTAR_TEST_SENTINELS"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "rockstar_ws.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [{"sentinels": [tuple(s) for s in json.loads(os.environ["ROCKSTAR_TEST_SENTINELS"])],
                                  "master_name": os.environ.get("ROCKSTAR_TEST_SENTINEL_MASTER", "m")}],
                       "prefix": os.environ.get("CHANNELS_REDIS_PREFIX", "asgi"), "capacity": 1000},
        }
    }

# A test's own server processes get their own Redis key prefix, and extra ROCKSTAR_WS keys as
# JSON (limits, refusal mode, middleware, ...) through the environment.
if os.environ.get("ROCKSTAR_TEST_PREFIX"):
    ROCKSTAR_WS["REGISTRY_KEY_PREFIX"] = os.environ["ROCKSTAR_TEST_PREFIX"] + ":live:"
    _layer: dict[str, Any] = CHANNEL_LAYERS["default"]
    if "CONFIG" in _layer:
        _layer["CONFIG"]["prefix"] = os.environ["ROCKSTAR_TEST_PREFIX"]
# Pub/sub history of the test routes (tests/testapp/pubsub_routes.py): short.* keeps 5, brief.* 1 s.
ROCKSTAR_WS["PUBSUB_HISTORY"] = {"GROUPS": [
    {"pattern": "news", "size": 1000, "ttl": 600},
    {"pattern": "room.*", "size": 100, "ttl": 600},
    {"pattern": "short.*", "size": 5, "ttl": 600},
    {"pattern": "brief.*", "size": 100, "ttl": 1},
    {"pattern": "user:*", "size": 20, "ttl": 600},
    {"pattern": "tenant:*", "size": 20, "ttl": 600},
]}
if os.environ.get("ROCKSTAR_TEST_PREFIX") and os.environ.get("REDIS_URL"):
    ROCKSTAR_WS["PUBSUB_HISTORY"]["KEY_PREFIX"] = os.environ["ROCKSTAR_TEST_PREFIX"] + ":history:"
ROCKSTAR_WS.update(json.loads(os.environ.get("ROCKSTAR_TEST_WS_SETTINGS", "{}")))

# Short-lived access tokens for the JS client's refresh tests (SimpleJWT's views issue them).
if os.environ.get("ROCKSTAR_TEST_ACCESS_TOKEN_SECONDS"):
    from datetime import timedelta

    SIMPLE_JWT = {**SIMPLE_JWT, "ACCESS_TOKEN_LIFETIME": timedelta(  # noqa: F405
        seconds=float(os.environ["ROCKSTAR_TEST_ACCESS_TOKEN_SECONDS"]))}
