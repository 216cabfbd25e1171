from __future__ import annotations

from django.urls import path

from playground.openai_api import views

app_name = "openai_api"
urlpatterns = [
    path("models", views.models, name="models"),
    path("models/<str:model_id>", views.model, name="model"),
    path("chat/completions", views.chat_completions, name="chat-completions"),
    path("completions", views.completions, name="completions"),
    path("embeddings", views.embeddings, name="embeddings"),
    path("<path:rest>", views.unknown, name="unknown"),
]
