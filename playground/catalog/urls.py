from __future__ import annotations

from django.urls import path

from playground.catalog import store_views, views

app_name = "catalog"
urlpatterns = [
    path("", views.model_list, name="list"),
    # Before <name>/, which a model named "add" could not reach: jobs and imports refuse names in
    # services.RESERVED_NAMES.
    path("add/", store_views.add, name="add"),
    path("add/pull/", store_views.pull, name="pull"),
    path("add/import/", store_views.import_model, name="import"),
    path("add/remote/", store_views.remote, name="remote"),
    path("<str:name>/", views.model_detail, name="detail"),
    path("<str:name>/remove/", store_views.remove, name="remove"),
    path("<str:name>/download/<str:what>/", views.download, name="download"),
    path("<str:name>/share/", views.share, name="share"),
]
