from __future__ import annotations

from django.contrib import admin

from playground.jobs.models import Dataset, Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "kind", "method", "base_model", "status", "step", "worker", "created"]
    list_filter = ["status", "kind", "method"]
    readonly_fields = ["metrics", "samples", "log_tail", "report", "heartbeat", "task_id"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "name", "format", "rows", "size_bytes", "created"]
