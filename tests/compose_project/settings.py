"""Settings of the composition tests' server processes: the tenant test settings plus a URLconf with
a probe view (tests/e2e/test_channels_compose.py serves tests.compose_project.asgi)."""

from tests.tenant_settings import *  # noqa: F403

ROOT_URLCONF = "tests.compose_project.urls"
ASGI_APPLICATION = "tests.compose_project.asgi.application"
