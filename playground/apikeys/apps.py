from django.apps import AppConfig


class ApiKeysConfig(AppConfig):
    name = "playground.apikeys"
    label = "apikeys"
    verbose_name = "API keys"
