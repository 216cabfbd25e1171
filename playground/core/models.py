from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """A live Celery worker, its device and queues; refreshed every few seconds while it runs."""

    hostname = models.CharField(max_length=255, unique=True)
    device = models.CharField(max_length=32)  # cuda, mps or cpu
    device_name = models.CharField(max_length=255, blank=True)
    queues = models.JSONField(default=list)
    pid = models.IntegerField()
    started = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.hostname} ({self.device})"
