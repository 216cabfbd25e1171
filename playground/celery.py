"""The Celery app: JSON only, late acks, one task at a time per worker process, two queues.

Jobs that want an accelerator go to the `gpu` queue, everything else to `cpu`. A worker finds its own
device when it starts (cuda, mps or cpu, or MODEL_DEVICE) and consumes `gpu` only when it has one. It
reports itself, with its device, through a heartbeat row in the database that /healthz and the job
router read.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")

app = Celery("playground")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("cpu"), Queue("gpu"))
app.autodiscover_tasks()

GPU_DEVICES = {"cuda", "mps"}


@celeryd_after_setup.connect
def choose_queues(sender: str, instance, conf, **kwargs) -> None:  # type: ignore[no-untyped-def]
    from playground.core.workers import worker_device

    device = worker_device()
    queues = instance.app.amqp.queues
    # Respect an explicit -Q; otherwise (both queues selected by default) drop `gpu` on a CPU-only worker.
    if set(queues.consume_from) == {"cpu", "gpu"} and device["type"] not in GPU_DEVICES:
        queues.deselect("gpu")


@worker_ready.connect
def start_heartbeat(sender, **kwargs) -> None:  # type: ignore[no-untyped-def]
    from playground.core.workers import start_heartbeat as start

    start(sender.hostname, sorted(sender.app.amqp.queues.consume_from))


@worker_shutdown.connect
def stop_heartbeat(sender, **kwargs) -> None:  # type: ignore[no-untyped-def]
    from playground.core.workers import stop_heartbeat as stop

    stop()
