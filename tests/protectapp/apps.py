from django.apps import AppConfig


class ProtectAppConfig(AppConfig):
    name = "tests.protectapp"
    label = "protectapp"
