from __future__ import annotations

from django.urls import path

from playground.engine import views

app_name = "engine"
urlpatterns = [
    path("engine/", views.engine_page, name="page"),
    path("metrics", views.metrics, name="metrics"),
]
