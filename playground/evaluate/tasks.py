"""The evaluation run's task: it takes only a job id; the Job row says everything else."""

from __future__ import annotations

from celery import Task, shared_task

from playground.evaluate.services.runs import run_evaluation_job
from playground.jobs.models import Job
from playground.jobs.services.jobs import TASK_NAMES


@shared_task(name=TASK_NAMES[Job.Kind.EVALUATE], bind=True)
def run_evaluation_task(self: Task, job_id: int) -> str:
    return run_evaluation_job(job_id, self.request.id, self.request.hostname or "")
