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
