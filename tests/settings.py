"""Test settings: the demo project plus a test app with probe routes."""

import os

from demo_project.settings import *  # noqa: F403
from demo_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
ROCKSTAR_WS = {
    "HANDLER_CLOSE_TIMEOUT": float(os.environ.get("ROCKSTAR_TEST_HANDLER_CLOSE_TIMEOUT", "2")),
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Extra ROCKSTAR_WS keys for one server process, as JSON (tests that start their own servers).
if os.environ.get("ROCKSTAR_TEST_WS"):
    import json

    ROCKSTAR_WS.update(json.loads(os.environ["ROCKSTAR_TEST_WS"]))
