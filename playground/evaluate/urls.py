from __future__ import annotations

from django.urls import path

from playground.evaluate import views

app_name = "evaluate"
urlpatterns = [
    path("", views.suite_list, name="list"),
    path("suites/<int:suite_id>/", views.suite_detail, name="suite"),
    path("suites/<int:suite_id>/share/", views.suite_share, name="share"),
    path("suites/<int:suite_id>/delete/", views.suite_delete, name="delete"),
    path("suites/<int:suite_id>/run/", views.suite_run, name="run"),
    path("runs/<int:job_id>/", views.run_detail, name="run-detail"),
]
