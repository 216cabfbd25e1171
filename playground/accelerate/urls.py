from __future__ import annotations

from django.urls import path

from playground.accelerate import views

app_name = "accelerate"
urlpatterns = [
    path("", views.page, name="page"),
    path("compare/", views.compare, name="compare"),
    path("<int:job_id>/", views.detail, name="detail"),
    path("<int:job_id>/cancel/", views.cancel, name="cancel"),
    path("<int:job_id>/resume/", views.resume, name="resume"),
]
