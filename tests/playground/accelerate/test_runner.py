"""Experiments through the project's job path, in this process on the tiny model: queued by the form,
claimed and run by the same code the Celery task runs (playground/accelerate/tasks.py), with progress,
cancellation, resume, the result kept on the job, its plots' data on the page, and comparison. The
worker process itself runs one in tests/e2e/test_accelerate_page.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from playground.accelerate.services import run_experiment_job
from playground.jobs.models import Job
from playground.jobs.services.runner import run_job
from tests.playground.accelerate.test_views import PAGE, form

pytestmark = pytest.mark.django_db


def queue(client: Client, data: dict[str, Any]) -> Job:
    response = client.post(PAGE, data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    return Job.objects.get(pk=int(response.url.rstrip("/").split("/")[-1]))


def run(job: Job) -> Job:
    status = run_experiment_job(job.pk, job.task_id, "test@host")
    job.refresh_from_db()
    assert status == job.status
    return job


def charts_on(html: str) -> list[dict[str, Any]]:
    match = re.search(r'<script id="experiment-charts" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page embeds the charts' data"
    return json.loads(match.group(1))


def test_the_experiment_task_is_registered_under_the_name_the_jobs_send() -> None:
    from playground.celery import app
    from playground.jobs.services.jobs import TASK_NAMES

    app.loader.import_default_modules()
    assert TASK_NAMES[Job.Kind.ACCELERATE] in app.tasks


def test_an_experiment_runs_on_the_job_path_and_keeps_its_result(
    client_in: Client, tiny_model, data_dir
) -> None:
    job = run(queue(client_in, form(batching__batch_sizes=["1", "2", "4"])))
    assert job.status == "succeeded", job.error
    assert (job.worker, job.device, job.step, job.total) == ("test@host", "cpu", 3, 3)
    assert job.finished
    assert job.heartbeat
    assert [r["batch_size_max"] for r in job.report["table"]] == [1, 2, 4]
    assert any("batch 4:" in line for line in job.log_tail), "each measurement is logged as it lands"
    assert not job.output_model, "an experiment makes no model"
    html = client_in.get(f"{PAGE}{job.pk}/").content.decode()
    assert 'id="experiment-summary"' in html
    assert "every 2s" not in html, "a finished experiment stops polling"
    assert charts_on(html) == job.report["charts"]
    assert 'id="experiment-table"' in html
    listing = client_in.get(PAGE).content.decode()
    assert job.report["summary"][:40] in listing
    assert "Accelerate experiment" in client_in.get("/jobs/").content.decode(), "it is one of the user's jobs"
    job_page = client_in.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/accelerate/{job.pk}/"' in job_page, "its job page points to the plots"


def test_a_running_experiment_polls_and_answers_204_while_nothing_changed(
    client_in: Client, tiny_model
) -> None:
    job = queue(client_in, form())
    html = client_in.get(f"{PAGE}{job.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in html
    version = re.search(r'"v": "([0-9a-f]+)"', html).group(1)
    assert client_in.get(f"{PAGE}{job.pk}/", {"v": version}, HTTP_HX_REQUEST="true").status_code == 204
    rows = client_in.get(PAGE, HTTP_HX_REQUEST="true").content.decode()
    assert rows.startswith('\n<tbody id="experiment-rows"') or 'id="experiment-rows"' in rows[:200]
    assert 'hx-trigger="every 2s"' in rows, "the list polls while an experiment is active"


def test_a_cancelled_experiment_stops_and_can_run_again(client_in: Client, tiny_model, data_dir) -> None:
    job = queue(client_in, form(batching__new_tokens="256"))
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)  # Cancel pressed as it starts
    job = run(job)
    assert (job.status, job.error) == ("cancelled", "Cancelled by the user.")
    assert not job.report
    assert client_in.post(f"{PAGE}{job.pk}/resume/").status_code == 302
    job.refresh_from_db()
    assert (job.status, job.cancel_requested) == ("queued", False)
    assert run(job).status == "succeeded"


def test_an_experiment_that_cannot_run_on_the_model_fails_with_the_reason(user, tiny_model, data_dir) -> None:
    job = Job.objects.create(owner=user, kind="accelerate", method="attention", base_model="tiny-llama",
                             params={"lengths": [4096]}, task_id="t1")  # fmt: skip
    job = run(job)
    assert job.status == "failed"
    assert "do not fit tiny-llama's context" in job.error
    stale = Job.objects.create(owner=user, kind="accelerate", method="batching", base_model="tiny-llama",
                               params={"new_tokens": 5000}, task_id="t2")  # fmt: skip
    assert run(stale).status == "failed", "params are checked again on the worker"


def test_quality_plots_what_a_quantize_job_measured(client_in: Client, user, tiny_model, data_dir) -> None:
    quantize = Job.objects.create(owner=user, kind="quantize", method="bf16", base_model="tiny-llama",
                                  output_name="tiny-bf16", task_id="q1")  # fmt: skip
    assert run_job(quantize.pk, "q1", "test@host") == "succeeded"
    quantize.refresh_from_db()
    job = run(queue(client_in, form("quality")))
    assert job.status == "succeeded", job.error
    (row,) = job.report["table"]
    assert row["model"] == "tiny-bf16"
    assert row["perplexity"] == round(quantize.report["quantized"]["perplexity"], 3)
    assert row["size_mb"] < row["parent_size_mb"]
    names = [s["name"] for s in charts_on(client_in.get(f"{PAGE}{job.pk}/").content.decode())[0]["series"]]
    assert names == ["tiny-llama (parent)", "tiny-bf16"]


def test_two_finished_experiments_of_one_kind_are_drawn_together(
    client_in: Client, tiny_model, data_dir
) -> None:
    a, b = (run(queue(client_in, form())) for _ in range(2))
    other = run(queue(client_in, form("attention")))
    assert {a.status, b.status, other.status} == {"succeeded"}
    assert 'name="b"' in client_in.get(f"{PAGE}{a.pk}/").content.decode(), "the result offers a comparison"
    response = client_in.get(f"{PAGE}compare/", {"a": a.pk, "b": b.pk})
    assert response.status_code == 200
    throughput = next(c for c in charts_on(response.content.decode()) if c["id"] == "throughput")
    assert {(s["name"], s["group"]) for s in throughput["series"]} >= {
        (f"#{a.pk} aggregate", 0), (f"#{b.pk} aggregate", 1)
    }  # fmt: skip
    assert client_in.get(f"{PAGE}compare/", {"a": a.pk, "b": other.pk}).status_code == 400
    assert client_in.get(f"{PAGE}compare/", {"a": a.pk, "b": a.pk}).status_code == 400
    waiting = queue(client_in, form())
    assert client_in.get(f"{PAGE}compare/", {"a": a.pk, "b": waiting.pk}).status_code == 400
