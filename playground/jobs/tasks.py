"""Celery tasks of the jobs app. They take only a job id; the Job row says everything else."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.signals import task_received, worker_ready

from playground.core.workers import on_beat
from playground.jobs.models import Job
from playground.jobs.services.jobs import TASK_NAMES, check_jobs, note_received
from playground.jobs.services.runner import run_job

log = logging.getLogger(__name__)
JOB_TASKS = set(TASK_NAMES.values())


@shared_task(name=TASK_NAMES[Job.Kind.QUANTIZE], bind=True)
def run_job_task(self: Task, job_id: int) -> str:
    """A quantize or fine-tune job (TASK_NAMES gives both kinds this task)."""
    return run_job(job_id, self.request.id, self.request.hostname or "")


@worker_ready.connect
def reap_jobs_of_a_restarted_worker(sender: Any, **kwargs: Any) -> None:
    """A worker that starts runs nothing yet: jobs still marked running on it were lost when it stopped."""
    try:
        check_jobs(restarted_worker=sender.hostname)
    except Exception:
        log.exception("could not check for jobs lost by a worker")


@on_beat
def check_jobs_on_every_beat(hostname: str) -> None:
    """Lost workers and lost messages are found without anyone looking at the jobs pages."""
    check_jobs()


@task_received.connect
def note_a_received_job(sender: Any, request: Any, **kwargs: Any) -> None:
    """The worker's main process has the message (its pool runs it next): a message in hand is not lost,
    however long the job waited in the queue before."""
    if request.name not in JOB_TASKS or not request.args:
        return
    try:
        note_received(int(request.args[0]), request.id)
    except Exception:
        log.exception("could not note that job %s was received", request.args[0])
