from django.apps import AppConfig


class TenantTestAppConfig(AppConfig):
    name = "tests.tenantapp"
    label = "rockstar_ws_tenantapp"
