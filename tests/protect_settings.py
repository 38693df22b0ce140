"""Settings of the server processes the protection tests start: the test settings, plus the
protection test routes (tests/protectapp) and ``ROCKSTAR_WS`` keys from the environment variable
``ROCKSTAR_TEST_WS_SETTINGS`` (JSON), so each test server can run with its own limits."""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, ROCKSTAR_WS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.protectapp"]
ROCKSTAR_WS = {**ROCKSTAR_WS, **json.loads(os.environ.get("ROCKSTAR_TEST_WS_SETTINGS", "{}"))}
