"""Jobs and datasets. A Job row is the source of truth for one fine-tune, distill or quantize run: the
worker writes its progress, metrics and heartbeat here (throttled) and the pages read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    """A parsed training set. The file lives under DATA_DIR/datasets/<file_name>; file_name is generated,
    never the user's filename, so an upload can never write outside that folder."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)  # for display only
    file_name = models.CharField(max_length=64, unique=True)
    original_suffix = models.CharField(max_length=8)  # ".jsonl", ".json", ".csv" or ".txt"
    format = models.CharField(max_length=20, blank=True)
    rows = models.IntegerField(default=0)
    size_bytes = models.IntegerField(default=0)
    errors = models.JSONField(default=list)  # [{"line": n, "message": str}]
    warnings = models.JSONField(default=list)
    sample = models.CharField(max_length=100, blank=True)  # the shipped sample it was copied from
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.name

    @property
    def path(self) -> Path:
        return Path(settings.DATA_DIR) / "datasets" / self.file_name

    @property
    def is_valid(self) -> bool:
        return not self.errors and self.rows > 0


class Job(models.Model):
    class Kind(models.TextChoices):
        FINETUNE = "finetune", "Fine-tune"
        QUANTIZE = "quantize", "Quantize"
        ACCELERATE = "accelerate", "Accelerate experiment"  # measures the engine; makes no model
        EVALUATE = "evaluate", "Evaluation run"  # a suite on 1-4 models (playground/evaluate); no model
        # Add a base model to the store (shared with everyone): playground/jobs/services/adding.py
        PULL = "pull", "Pull"
        IMPORT = "import", "Import"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    ADDING = (Kind.PULL, Kind.IMPORT)  # add a base model: no parent, no curves or report

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    method = models.CharField(max_length=40)
    base_model = models.CharField(max_length=64)
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    params = models.JSONField(default=dict)
    output_name = models.CharField(max_length=64)  # the catalog name the result will take

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    phase = models.CharField(max_length=40, blank=True)
    step = models.IntegerField(default=0)
    total = models.IntegerField(default=0)
    eta_seconds = models.IntegerField(null=True, blank=True)
    queue = models.CharField(max_length=20, blank=True)
    task_id = models.CharField(max_length=64, blank=True)  # the Celery message that may run this job now
    device = models.CharField(max_length=20, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    metrics = models.JSONField(default=list)  # [{"step": n, "t": seconds, "loss": ..., "lr": ...}]
    samples = models.JSONField(default=list)  # [{"step": n, "prompt": str, "output": str}]
    log_tail = models.JSONField(default=list)  # the last lines, bounded
    report = models.JSONField(default=dict)  # the quantize verify report, or the final fine-tune metrics
    error = models.TextField(blank=True)
    output_model = models.CharField(max_length=64, blank=True)  # set once the model is in the catalog

    cancel_requested = models.BooleanField(default=False)
    heartbeat = models.DateTimeField(null=True, blank=True)
    attempt = models.IntegerField(default=0)
    # When the current message was last sent or received by a worker, and how often it was sent again
    # because no worker had received it (services/jobs.py: lost messages).
    message_seen = models.DateTimeField(null=True, blank=True)
    resends = models.IntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.kind} {self.method})"

    @property
    def work_dir(self) -> Path:
        return Path(settings.DATA_DIR) / "jobs" / str(self.pk)

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def adds_model(self) -> bool:
        return self.kind in self.ADDING

    @property
    def can_cancel(self) -> bool:
        return self.is_active and not self.cancel_requested

    @property
    def can_resume(self) -> bool:
        return self.status in (self.Status.FAILED, self.Status.CANCELLED)

    @property
    def has_checkpoints(self) -> bool:
        folder = self.work_dir / "checkpoints"
        return folder.is_dir() and any(folder.iterdir())

    @property
    def chosen_params(self) -> dict[str, Any]:
        """The job's parameters as the user chose them (without the routing data kept beside them)."""
        return {k: v for k, v in self.params.items() if k != "devices_ok"}

    @property
    def percent(self) -> int:
        if self.status == self.Status.SUCCEEDED:
            return 100
        return int(100 * self.step / self.total) if self.total else 0

    @property
    def last_metrics(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for point in self.metrics[-20:]:
            merged.update(point)
        return merged
