from django.apps import AppConfig


class InspectConfig(AppConfig):
    name = "playground.inspect"
    label = "inspect"
    verbose_name = "Inspect"
