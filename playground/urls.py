from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("playground.core.urls")),
    path("models/", include("playground.catalog.urls")),
    path("chat/", include("playground.chat.urls")),
    path("jobs/", include("playground.jobs.urls")),
    path("", include("playground.engine.urls")),  # /engine/ and /metrics
    path("accelerate/", include("playground.accelerate.urls")),
    path("evaluate/", include("playground.evaluate.urls")),
    path("keys/", include("playground.apikeys.urls")),
    path("v1/", include("playground.openai_api.urls")),  # the OpenAI-compatible API
    path("", include("playground.inspect.urls")),
    path("admin/", admin.site.urls),
]

# An address no route matches (DEBUG off; with DEBUG on, UserErrorMiddleware answers it the same way).
handler404 = "playground.core.errors.not_found"
