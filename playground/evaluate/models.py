"""Evaluation suites: a set of items (input, references, tags for axes, a rubric, checks) a model is scored
on. Shipped suites have no owner and everyone sees them; a user's suite is private until shared. The task,
metrics and labels are validated by llmcore.eval_suites (through services), which owns their choices."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Suite(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="suites"
    )  # None: shipped with the project
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    task = models.CharField(max_length=20)  # a key of llmcore.eval_suites.TASKS
    metrics = models.JSONField(default=list)  # keys of llmcore.eval_suites.METRICS
    labels = models.JSONField(default=list)  # the classes of a classification or NLI suite
    shared = models.BooleanField(default=False)
    shipped = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-shipped", "name", "pk"]

    def __str__(self) -> str:
        return self.name


class SuiteItem(models.Model):
    suite = models.ForeignKey(Suite, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()  # 0-based position in the file
    input = models.TextField()
    references = models.JSONField(default=list)  # [str]
    tags = models.JSONField(default=list)  # [str]: the axes its scores are broken down by
    rubric = models.TextField(blank=True)
    checks = models.JSONField(default=list)  # [{"check": "max_words", "n": 20}, ...]

    class Meta:
        ordering = ["suite", "index"]
        constraints = [models.UniqueConstraint(fields=["suite", "index"], name="suite_item_index")]

    def __str__(self) -> str:
        return f"{self.suite} #{self.index + 1}"


class EvalOutput(models.Model):
    """One model's answer to one item of an evaluation run (a Job of kind "evaluate"), with that item's
    score by each of the suite's metrics. The run's summary is the job's report."""

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="eval_outputs")
    model_name = models.CharField(max_length=64)
    index = models.PositiveIntegerField()  # the item's SuiteItem.index
    output = models.TextField()
    tokens = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)  # the engine's, when the request failed
    scores = models.JSONField(default=dict)  # {"exact_match": 1.0, "token_f1": 0.5, ...}; None: not scored

    class Meta:
        ordering = ["job", "index", "model_name"]
        constraints = [
            models.UniqueConstraint(fields=["job", "model_name", "index"], name="eval_output_item")
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} {self.model_name} #{self.index + 1}"
