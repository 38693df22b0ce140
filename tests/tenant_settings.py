"""Settings of the tenant tests' server processes: tests.settings plus tenant knobs from the environment."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import CHANNEL_LAYERS, INSTALLED_APPS, ROCKSTAR_WS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.tenantapp"]
ROCKSTAR_WS = {
    **ROCKSTAR_WS,
    "TENANT_SWEEP_INTERVAL": float(os.environ.get("ROCKSTAR_TEST_TENANT_SWEEP", "30")),
    "TENANT_CACHE_TTL": float(os.environ.get("ROCKSTAR_TEST_TENANT_TTL", "5")),
}
if os.environ.get("ROCKSTAR_TEST_TENANT_RESOLVER"):
    _resolver = os.environ["ROCKSTAR_TEST_TENANT_RESOLVER"]
    ROCKSTAR_WS["TENANT_RESOLVER"] = None if _resolver == "none" else _resolver
if os.environ.get("REDIS_URL") and os.environ.get("ROCKSTAR_TEST_LAYER_PREFIX"):
    CHANNEL_LAYERS = {"default": {**CHANNEL_LAYERS["default"],
                                  "CONFIG": {**CHANNEL_LAYERS["default"]["CONFIG"],
                                             "prefix": os.environ["ROCKSTAR_TEST_LAYER_PREFIX"]}}}
