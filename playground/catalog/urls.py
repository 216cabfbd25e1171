from __future__ import annotations

from django.urls import path

from playground.catalog import views

app_name = "catalog"
urlpatterns = [
    path("", views.model_list, name="list"),
    path("<str:name>/", views.model_detail, name="detail"),
    path("<str:name>/download/<str:what>/", views.download, name="download"),
    path("<str:name>/share/", views.share, name="share"),
]
