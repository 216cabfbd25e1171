from __future__ import annotations

from django.apps import AppConfig


class OpenaiApiConfig(AppConfig):
    name = "playground.openai_api"
    label = "openai_api"
    verbose_name = "OpenAI-compatible API"
