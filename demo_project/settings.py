"""Settings of the rockstar_ws demo project.

Embedded by default: SQLite and the in-memory channel layer, nothing to install. Set
``REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``) to share a Redis between several daphne
processes: the channel layer and the live-connection registry then use it.
"""

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ROCKSTAR_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-secret-key-change-me-in-production-0123456789")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", ".localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    # Lets a project revoke tokens; rockstar_ws then also refuses blacklisted access tokens.
    "rest_framework_simplejwt.token_blacklist",
    "rockstar_ws",
    "demo_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
ASGI_APPLICATION = "demo_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ROCKSTAR_DB", str(VAR_DIR / "db.sqlite3")),
        "OPTIONS": {"timeout": 20},
    }
}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis with a waiting connection pool (rockstar_ws/layers.py, docs/broadcast.md).
            "BACKEND": "rockstar_ws.layers.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": os.environ.get("CHANNELS_REDIS_PREFIX", "asgi"),
                       "capacity": 1000},
        }
    }
else:
    # channels' in-memory layer, without its O(channels) sweep per receive and with each
    # connection's channel attached instead of a listener task (rockstar_ws/layers.py).
    CHANNEL_LAYERS = {"default": {"BACKEND": "rockstar_ws.layers.InMemoryChannelLayer"}}

ROCKSTAR_WS: dict[str, Any] = {
    # Demo routes live in demo_project/demo/ws_routes.py (autodiscovered).
    # What /api/token/ puts into tokens (rockstar_ws.auth.serializers): the user's DemoGrant.
    "TOKEN_SCOPES": "demo_project.demo.grants.scopes",
    "TOKEN_TENANT": "demo_project.demo.grants.tenant",
    # History of the /ws/live pub/sub groups (docs/pubsub.md): in the channel layer's Redis when
    # REDIS_URL is set, else in memory.
    "PUBSUB_HISTORY": {"GROUPS": [
        {"pattern": "news", "size": 100, "ttl": 24 * 3600},
        {"pattern": "room.*", "size": 50, "ttl": 3600},
        {"pattern": "user:*", "size": 20, "ttl": 3600},
    ]},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=15),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    # /api/token/ and /api/token/refresh/ put the user's scopes and tenant into the tokens.
    "TOKEN_OBTAIN_SERIALIZER": "rockstar_ws.auth.serializers.TokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "rockstar_ws.auth.serializers.TokenRefreshSerializer",
}

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/admin/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "rockstar_ws": {
            "handlers": ["console"],
            "level": os.environ.get("ROCKSTAR_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        "demo": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
