from django.apps import AppConfig


class EvaluateConfig(AppConfig):
    name = "playground.evaluate"
    label = "evaluate"
    verbose_name = "Evaluate"
