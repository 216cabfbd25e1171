from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkerHeartbeatQuerySet(models.QuerySet["WorkerHeartbeat"]):
    def live(self) -> WorkerHeartbeatQuerySet:
        """Workers heard from within WORKER_HEARTBEAT_TIMEOUT seconds, by hostname."""
        since = timezone.now() - timedelta(seconds=settings.WORKER_HEARTBEAT_TIMEOUT)
        return self.filter(last_seen__gte=since).order_by("hostname")


class WorkerHeartbeat(models.Model):
    """A live Celery worker, its device and queues; refreshed every few seconds while it runs."""

    hostname = models.CharField(max_length=255, unique=True)
    device = models.CharField(max_length=32)  # cuda, mps or cpu
    device_name = models.CharField(max_length=255, blank=True)
    queues = models.JSONField(default=list)
    pid = models.IntegerField()
    started = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    objects = WorkerHeartbeatQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.hostname} ({self.device})"
