"""The experiment task: it takes only a job id; the Job row says everything else."""

from __future__ import annotations

from celery import Task, shared_task

from playground.accelerate.services import run_experiment_job
from playground.jobs.models import Job
from playground.jobs.services.jobs import TASK_NAMES


@shared_task(name=TASK_NAMES[Job.Kind.ACCELERATE], bind=True)
def run_experiment_task(self: Task, job_id: int) -> str:
    return run_experiment_job(job_id, self.request.id, self.request.hostname or "")
