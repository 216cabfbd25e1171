"""The Celery app: JSON only, late acks, one task at a time per worker process, two queues.

Jobs that want an accelerator go to the `gpu` queue, everything else to `cpu`. A worker finds its own
device when it starts (cuda, mps or cpu, or MODEL_DEVICE) and consumes `gpu` only when it has one. It
reports itself, with its device, through a heartbeat row in the database that /healthz and the job
router read. Those signal handlers live in playground/core/workers.py, which the worker imports with the
apps' task modules (after Django is set up, before the worker picks its queues).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")

app = Celery("playground")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("cpu"), Queue("gpu"))
app.autodiscover_tasks()
