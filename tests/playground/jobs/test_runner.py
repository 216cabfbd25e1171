"""The job runner in this process on the tiny model: real llmcore, real store and catalog, no Celery
(the worker process tests in test_worker.py cover that path)."""

from __future__ import annotations

import pytest

from playground.catalog.models import ModelEntry
from playground.jobs.models import Job
from playground.jobs.services.runner import run_job

pytestmark = pytest.mark.django_db


def make_job(user, **fields) -> Job:
    defaults = {"kind": "quantize", "method": "bf16", "base_model": "tiny-llama", "output_name": "tiny-bf16",
                "task_id": "t1", "params": {}}  # fmt: skip
    return Job.objects.create(owner=user, **{**defaults, **fields})


def test_a_quantize_job_writes_its_result_into_the_catalog_with_its_parent(
    user, tiny_model, data_dir
) -> None:
    job = make_job(user)
    assert run_job(job.pk, "t1", "test@host") == "succeeded"
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.output_model == "tiny-bf16"
    assert job.finished
    assert job.worker == "test@host"
    entry = ModelEntry.objects.get(name="tiny-bf16")
    assert entry.parent is not None
    assert entry.parent.name == "tiny-llama"
    assert entry.method == "bf16"
    assert entry.extra["job"] == job.pk
    assert entry.extra["quantize_report"] == job.report
    assert job.log_tail, "the log tail records what happened"
    assert not any(p.name.startswith("out-") for p in job.work_dir.iterdir()), "the temp output is removed"


def test_a_message_for_a_job_that_moved_on_does_nothing(user, tiny_model, data_dir) -> None:
    failed = make_job(user, status="failed", error="Worker lost", output_name="a")
    assert run_job(failed.pk, "t1", "test@host") == "skipped"
    failed.refresh_from_db()
    assert (failed.status, failed.error) == ("failed", "Worker lost")
    resumed = make_job(user, task_id="new", output_name="b")
    assert run_job(resumed.pk, "old", "test@host") == "skipped", "a stale message of a resumed job"
    assert Job.objects.get(pk=resumed.pk).status == "queued"


def test_a_redelivered_message_restarts_a_running_job_until_the_attempt_limit(
    user, tiny_model, data_dir, settings
) -> None:
    settings.JOB_MAX_ATTEMPTS = 2
    job = make_job(user, status="running", attempt=1)
    assert run_job(job.pk, "t1", "test@host") == "succeeded"
    assert Job.objects.get(pk=job.pk).attempt == 2
    again = make_job(user, status="running", attempt=2, output_name="tiny-bf16-b")
    assert run_job(again.pk, "t1", "test@host") == "skipped"
    again.refresh_from_db()
    assert again.status == "failed"
    assert again.error.startswith("Worker lost")
    assert not ModelEntry.objects.filter(name="tiny-bf16-b").exists()


def test_a_failing_job_says_why_and_leaves_no_model(user, tiny_model, data_dir) -> None:
    job = make_job(user, method="int4_weight", params={"group_size": 48})  # 48 does not divide 64
    assert run_job(job.pk, "t1", "test@host") == "failed"
    job.refresh_from_db()
    assert job.error
    assert "48" in job.error
    assert not ModelEntry.objects.filter(name="tiny-bf16").exists()
