"""Celery tasks of the jobs app. They take only a job id; the Job row says everything else."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.signals import worker_ready


@shared_task(name="jobs.run_quantize_task", bind=True)
def run_quantize_task(self: Task, job_id: int) -> str:
    from playground.jobs.services.runner import run_job

    return run_job(job_id, self.request.id, self.request.hostname or "")


@shared_task(name="jobs.run_finetune_task", bind=True)
def run_finetune_task(self: Task, job_id: int) -> str:
    from playground.jobs.services.runner import run_job

    return run_job(job_id, self.request.id, self.request.hostname or "")


def task_for(kind: str) -> Any:
    return run_quantize_task if kind == "quantize" else run_finetune_task


@worker_ready.connect
def reap_jobs_of_a_restarted_worker(sender: Any, **kwargs: Any) -> None:
    """A worker that starts runs nothing yet: jobs still marked running on it were lost when it stopped."""
    import logging

    from playground.jobs.services.jobs import reap_lost_jobs

    try:
        reap_lost_jobs(restarted_worker=sender.hostname)
    except Exception:
        logging.getLogger(__name__).exception("could not check for jobs lost by a worker")
