"""Evaluation runs: a suite run on models as a job. In this process: the form queues it (refusing models
and suites the user may not see), the same code the Celery task runs answers and scores every item, the
results page shows the table and the answers (a 404 to anyone else), cancel stops it. Then once through a
real Celery worker process on the tiny model (Daphne serving the site, the embedded broker)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from llmcore.eval_runs import RunItem, disagree, score_run
from llmcore.store import ModelStore
from playground.catalog.models import ModelEntry
from playground.evaluate.models import EvalOutput, Suite
from playground.evaluate.services import create_suite
from playground.evaluate.services.runs import run_evaluation_job
from playground.jobs.models import Job
from tests.conftest import TINY_NAME
from tests.playground.jobs.sites import Stack, jobs_site

SECOND = "tiny-llama-twin"
ITEMS = (
    '{"input": "What is 2 + 2?", "references": ["4", "four"], "tags": ["math"]}\n'
    '{"input": "Capital of Italy?", "reference": "Rome", "tags": ["geography"]}\n'
    '{"input": "Capital of France?", "reference": "Paris", "tags": ["geography"]}\n'
)


def make_suite(owner, name: str = "Tiny QA") -> Suite:
    return create_suite(
        owner, ITEMS.encode(), "s.jsonl", name=name, task="qa", metrics=["exact_match", "token_f1"], labels=[]
    )


def run_form(**extra: object) -> dict[str, object]:
    return {
        "models": [TINY_NAME],
        "temperature": "0",
        "top_p": "1",
        "max_new_tokens": "4",
        "seed": "3",
        **extra,
    }


def queue(client: Client, suite: Suite, **extra: object) -> Job:
    response = client.post(reverse("evaluate:run", args=[suite.pk]), run_form(**extra))
    assert response.status_code == 302, response.content.decode()[-3000:]
    match = re.search(r"/jobs/(\d+)/$", response.url)
    assert match, response.url
    return Job.objects.get(pk=int(match.group(1)))


def run(job: Job) -> Job:
    status = run_evaluation_job(job.pk, job.task_id, "test@host")
    job.refresh_from_db()
    assert status == job.status
    return job


# --- the scoring step alone ------------------------------------------------------------------------
def test_scoring_gives_every_metric_an_interval_per_tag_scores_and_item_scores() -> None:
    items = [
        RunItem("q1", ["Paris"], ["geo"]),
        RunItem("q2", ["4"], ["math"]),
        RunItem("q3", ["Rome"], ["geo"]),
    ]
    scores = score_run(["exact_match", "token_f1"], items, ["Paris.", "five", "the Rome"], seed=1)
    em = scores.summary["exact_match"]
    assert em["value"] == pytest.approx(2 / 3)
    assert em["low"] <= em["value"] <= em["high"]
    assert em["by_tag"]["geo"]["value"] == 1.0
    assert em["by_tag"]["math"]["value"] == 0.0
    assert [row["exact_match"] for row in scores.per_item] == [1.0, 0.0, 1.0]
    assert set(scores.per_item[0]) == {"exact_match", "token_f1"}


def test_accuracy_keeps_its_confusion_and_checks_their_pass_rates() -> None:
    items = [RunItem("a", ["positive"]), RunItem("b", ["negative"])]
    acc = score_run(["accuracy"], items, ["positive", "positive"], labels=["positive", "negative"])
    assert acc.summary["accuracy"]["confusion"]["matrix"] == [[1, 0, 0], [1, 0, 0]]
    checked = [RunItem("x", checks=[{"check": "no_commas"}]), RunItem("y", checks=[{"check": "no_commas"}])]
    rates = score_run(["checks"], checked, ["no commas here", "one, two"]).summary["checks"]["per_check"]
    assert rates["no_commas"] == {"passed": 1, "total": 2, "rate": 0.5}


def test_models_disagree_when_correctness_or_normalized_answers_differ() -> None:
    assert not disagree(["Paris", "paris."], [1.0, 1.0])
    assert disagree(["Paris", "Rome"], [None, None])
    assert disagree(["Paris", "Paris"], [1.0, 0.0])


# --- in this process, on the job path ----------------------------------------------------------------
@pytest.fixture
def twin(store, tiny_model, tiny_model_dir: Path):
    """A second model (the tiny one under another name), so a run compares two."""
    return store.import_folder(tiny_model_dir, SECOND, license="MIT")


@pytest.mark.django_db
def test_a_run_answers_every_item_with_every_model_and_scores_them(
    client_in: Client, user, twin, data_dir
) -> None:
    suite = make_suite(user)
    job = run(queue(client_in, suite, models=[TINY_NAME, SECOND]))
    assert job.status == "succeeded", job.error
    assert (job.kind, job.step, job.total) == ("evaluate", 6, 6)
    assert not job.output_model, "a run makes no model"
    for name in (TINY_NAME, SECOND):
        outputs = EvalOutput.objects.filter(job=job, model_name=name).order_by("index")
        assert [o.index for o in outputs] == [0, 1, 2]
        assert all(set(o.scores) == {"exact_match", "token_f1"} for o in outputs)
        assert all(o.tokens <= 4 for o in outputs), "max new tokens is the run's"
        for metric in ("exact_match", "token_f1"):
            cell = job.report["results"][name][metric]
            assert cell["low"] <= cell["value"] <= cell["high"]
            assert set(cell["by_tag"]) == {"math", "geography"}
    same = [list(EvalOutput.objects.filter(job=job, model_name=n).values_list("output", flat=True))
            for n in (TINY_NAME, SECOND)]  # fmt: skip
    assert same[0] == same[1], "the same weights, greedy and seeded, answer the same"
    assert job.report["settings"] == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 4, "seed": 3}

    page = client_in.get(reverse("evaluate:run-detail", args=[job.pk])).content.decode()
    assert 'id="run-table"' in page
    assert page.count('<th scope="row">tiny-llama') == 2, "one row per model"
    assert page.count('data-index="') == 3, "every item, side by side with the references"
    assert "Capital of Italy?" in page
    assert "<div>Rome</div>" in page, "the references beside the answers"
    agree = client_in.get(reverse("evaluate:run-detail", args=[job.pk]), {"disagree": "1"}).content.decode()
    assert 'data-index="' not in agree, "two copies of one model never disagree"
    assert "The models agree on every item." in agree
    job_page = client_in.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/evaluate/runs/{job.pk}/"' in job_page, "the job page links its results"
    assert job.report["summary"].startswith("Exact match: ")
    assert job.report["summary"] in job_page, "the job page says the result in a line"
    suite_page = client_in.get(reverse("evaluate:suite", args=[suite.pk])).content.decode()
    assert f'href="/evaluate/runs/{job.pk}/"' in suite_page, "the suite page lists its runs"


@pytest.mark.django_db
def test_a_run_is_a_404_to_anyone_but_its_owner(client_in: Client, user, tiny_model, stranger_client) -> None:
    job = queue(client_in, make_suite(user))
    url = reverse("evaluate:run-detail", args=[job.pk])
    assert client_in.get(url).status_code == 200
    assert "follow it on its job page" in client_in.get(url).content.decode(), "queued: not results yet"
    assert stranger_client.get(url).status_code == 404
    assert stranger_client.get(reverse("evaluate:run-detail", args=[job.pk + 1000])).status_code == 404


@pytest.mark.django_db
def test_the_form_refuses_models_the_user_may_not_use_beside_the_field(
    client_in: Client, user, store, tiny_model, tiny_model_dir: Path, stranger
) -> None:
    extra = {"owner_id": stranger.pk, "owner": stranger.username, "shared": False}
    store.import_folder(tiny_model_dir, "mallorys-model", license="MIT", extra=extra)
    suite = make_suite(user)
    url = reverse("evaluate:run", args=[suite.pk])
    for models, words in [
        (["mallorys-model"], "Unknown model mallorys-model"),
        ([], "This field is required"),
        ([TINY_NAME, "nope"], "Unknown model nope"),
    ]:
        response = client_in.post(url, run_form(models=models))
        assert response.status_code == 400
        assert words in response.content.decode()
        assert 'id="field-models"' in response.content.decode()
    response = client_in.post(url, run_form(max_new_tokens="0", temperature="9"))
    assert response.status_code == 400
    assert not Job.objects.filter(kind="evaluate").exists(), "nothing is queued from a refused form"


@pytest.mark.django_db
def test_a_remote_model_is_refused_with_the_reason(client_in: Client, user, tiny_model) -> None:
    ModelEntry.objects.create(  # the row add_remote writes once the server answered (see tests/.../catalog)
        name="far-llama", source="remote: http://127.0.0.1:1/v1 (tiny-llama)", method="remote", sha256="",
        created=timezone.now(), family="remote", architecture="served elsewhere", parameters=0, dtype="",
        size_bytes=0, context_length=2048, shared=True,
        meta={"remote": {"host": "127.0.0.1:1", "model": TINY_NAME, "base_url": "http://127.0.0.1:1/v1"}},
    )  # fmt: skip
    response = client_in.post(
        reverse("evaluate:run", args=[make_suite(user).pk]), run_form(models=["far-llama"])
    )
    assert response.status_code == 400
    assert "far-llama is a remote model" in response.content.decode()
    assert not Job.objects.filter(kind="evaluate").exists()


@pytest.mark.django_db
def test_a_suite_the_user_may_not_see_cannot_be_run(client_in: Client, tiny_model, stranger) -> None:
    private = make_suite(stranger, "Mallory's")
    assert client_in.post(reverse("evaluate:run", args=[private.pk]), run_form()).status_code == 404
    assert not Job.objects.filter(kind="evaluate").exists()


@pytest.mark.django_db
def test_a_cancelled_run_stops_and_can_run_again(client_in: Client, user, tiny_model, data_dir) -> None:
    job = queue(client_in, make_suite(user), max_new_tokens="64")
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)  # Cancel pressed as it starts
    job = run(job)
    assert (job.status, job.error) == ("cancelled", "Cancelled by the user.")
    assert client_in.post(f"/jobs/{job.pk}/resume/").status_code == 302
    job.refresh_from_db()
    assert run(job).status == "succeeded"
    assert EvalOutput.objects.filter(job=job).count() == 3, "a resumed run starts over: one answer an item"


# --- through a real Celery worker process ----------------------------------------------------------
@pytest.fixture(scope="module")
def stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("evaluate-site")
    ModelStore(data_dir / "models").import_folder(tiny_model_dir, SECOND, license="MIT")
    with jobs_site(data_dir, tiny_model_dir) as s:
        yield s


@pytest.mark.integration
def test_a_run_goes_through_the_worker_and_its_results_page_shows_the_table(stack: Stack) -> None:
    suite_form = {"name": "Worker QA", "task": "qa", "metrics": ["exact_match", "token_f1"], "text": ITEMS}
    response = stack.post("/evaluate/", suite_form)
    suite = re.search(r"/evaluate/suites/(\d+)/$", response.url)
    assert suite, response.text[-2000:]
    job_id = stack.submit(f"/evaluate/suites/{suite.group(1)}/run/", run_form(models=[TINY_NAME, SECOND]))
    job = stack.wait(job_id, lambda j: j["status"] not in ("queued", "running"), 300, "the evaluation run")
    assert job["status"] == "succeeded", job["error"]
    assert (job["step"], job["total"]) == (6, 6)
    for name in (TINY_NAME, SECOND):
        for metric in ("exact_match", "token_f1"):
            cell = job["report"]["results"][name][metric]
            assert cell["low"] <= cell["value"] <= cell["high"]
    page = stack.http.get(f"{stack.url}/evaluate/runs/{job_id}/").text
    assert 'id="run-table"' in page
    assert page.count('data-index="') == 3, "every item's answers were kept"
    assert page.count('class="pre answer') == 6, "one answer per item and model"
    assert f'href="/evaluate/runs/{job_id}/"' in stack.page(job_id)
