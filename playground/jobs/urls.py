from __future__ import annotations

from django.urls import path

from playground.jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("new/quantize/", views.new_quantize, name="new-quantize"),
    path("new/finetune/", views.new_finetune, name="new-finetune"),
    path("datasets/", views.dataset_list, name="datasets"),
    path("datasets/sample/", views.dataset_sample, name="dataset-sample"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset"),
    path("compare/<str:name>/", views.compare, name="compare"),
    path("<int:job_id>/", views.job_detail, name="detail"),
    path("<int:job_id>/status.json", views.job_status, name="status"),
    path("<int:job_id>/cancel/", views.job_cancel, name="cancel"),
    path("<int:job_id>/resume/", views.job_resume, name="resume"),
]
