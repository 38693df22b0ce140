"""Test settings: the demo project plus a test app with probe routes."""

import os

from demo_project.settings import *  # noqa: F403
from demo_project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
ROCKSTAR_WS = {
    "HANDLER_CLOSE_TIMEOUT": float(os.environ.get("ROCKSTAR_TEST_HANDLER_CLOSE_TIMEOUT", "2")),
    "REFUSAL_MODE": os.environ.get("ROCKSTAR_TEST_REFUSAL_MODE", "http"),
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A test may start its own server process with extra ROCKSTAR_WS keys, as JSON in this variable.
if os.environ.get("ROCKSTAR_TEST_WS_JSON"):
    import json

    ROCKSTAR_WS = {**ROCKSTAR_WS, **json.loads(os.environ["ROCKSTAR_TEST_WS_JSON"])}
