from django.apps import AppConfig


class AccelerateConfig(AppConfig):
    name = "playground.accelerate"
    label = "accelerate"
    verbose_name = "Accelerate"
