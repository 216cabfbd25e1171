from __future__ import annotations

from django import template

from playground.evaluate.services import METRICS, TASKS

register = template.Library()


@register.filter
def task_label(task: str) -> str:
    return TASKS.get(task, task)


@register.filter
def metric_labels(metrics: list[str]) -> str:
    return ", ".join(METRICS.get(m, m) for m in metrics)
