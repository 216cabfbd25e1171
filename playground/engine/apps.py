from django.apps import AppConfig


class EngineConfig(AppConfig):
    name = "playground.engine"
    label = "engine"
    verbose_name = "Engine"
