"""The Accelerate page: login, the form refusing bad parameters beside their field (4xx), CSRF, and
experiments that are their owner's alone."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from playground.catalog.services import owner_extra
from playground.jobs.models import Job

pytestmark = pytest.mark.django_db
PAGE = "/accelerate/"


# What a browser sends for each experiment's ticked boxes (the numbers left empty take their defaults).
TICKED: dict[str, dict[str, Any]] = {
    "batching": {"batching-batch_sizes": ["1", "2"], "batching-new_tokens": "32"},
    "speculative": {"speculative-draft_lengths": ["1", "4"], "speculative-new_tokens": "16"},
    "attention": {"attention-lengths": ["32", "64"], "attention-repeats": "1"},
    "prefix_cache": {"prefix_cache-turns": "2", "prefix_cache-new_tokens": "4"},
}


def form(experiment: str = "batching", **fields: Any) -> dict[str, Any]:
    """The form's data; `kind__field=value` sets the field `kind-field`."""
    data: dict[str, Any] = {"model": "tiny-llama", "experiment": experiment, **TICKED.get(experiment, {})}
    return data | {k.replace("__", "-"): v for k, v in fields.items()}


def field_block(html: str, name: str) -> str:
    """The HTML of one field's block: its widget, help and errors."""
    start = html.index(f'id="field-{name}"')
    end = html.find('id="field-', start + 10)
    return html[start : end if end > 0 else len(html)]


def test_the_page_needs_a_login(client: Client, user) -> None:
    for url in [PAGE, f"{PAGE}1/", f"{PAGE}compare/?a=1&b=2"]:
        response = client.get(url)
        assert response.status_code == 302
        assert "/login/" in response.url
    assert client.post(PAGE, form()).status_code == 302
    assert not Job.objects.exists()


def test_the_form_offers_the_users_models_every_experiment_and_its_limits(
    client_in: Client, tiny_model
) -> None:
    response = client_in.get(PAGE)
    html = response.content.decode()
    assert response.status_code == 200
    assert '<option value="tiny-llama"' in html
    for kind in ["batching", "prefix_cache", "speculative", "attention", "quality"]:
        assert f'value="{kind}"' in html
        assert f'data-experiment="{kind}"' in html, "each experiment has its fieldset"
    assert "32-256" in field_block(html, "batching-new_tokens"), "the bounds are shown"
    assert 'max="256"' in field_block(html, "batching-new_tokens")
    assert 'href="/accelerate/" aria-current="page"' in html, "the navigation marks the page"
    assert "<script>" not in html, "no inline script (the CSP forbids it)"
    assert " style=" not in html, "no inline style"


def test_a_valid_experiment_is_queued_as_a_job_of_its_own_kind(client_in: Client, user, tiny_model) -> None:
    response = client_in.post(PAGE, form())
    job = Job.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("accelerate:detail", args=[job.pk])
    assert (job.owner, job.kind, job.method, job.base_model) == (user, "accelerate", "batching", "tiny-llama")
    assert job.params == {"batch_sizes": [1, 2], "new_tokens": 32}
    assert (job.status, job.queue, job.output_name) == ("queued", "cpu", "")
    assert job.task_id, "a message was prepared for a worker (sent once the row is committed)"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (form(batching__new_tokens="999"), "batching-new_tokens", "less than or equal to 256"),
        (form(batching__new_tokens="8"), "batching-new_tokens", "greater than or equal to 32"),
        (form(batching__batch_sizes=["3"]), "batching-batch_sizes", "Select a valid choice"),
        (form(batching__batch_sizes=[]), "batching-batch_sizes", "Choose at least one"),
        (form("prefix_cache", prefix_cache__turns="9"), "prefix_cache-turns", "less than or equal to 8"),
        (form("speculative", speculative__draft_lengths=["0"]), "speculative-draft_lengths", "valid choice"),
        (form("speculative", speculative__draft_model="../etc"), "speculative-draft_model", "valid choice"),
        (
            form("attention", attention__lengths=["128", "256"]),
            "attention-lengths",
            "reads at most 256 tokens",
        ),
        (form("attention", attention__backends=["fast"]), "attention-backends", "valid choice"),
        (form("quality"), "model", "no quantized child"),
        (form(model="someone-elses"), "model", "valid choice"),
        (form("nonsense"), "experiment", "valid choice"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason_beside_the_field(
    client_in: Client, tiny_model, data: dict[str, Any], field: str, message: str
) -> None:
    response = client_in.post(PAGE, data)
    assert response.status_code == 400
    block = field_block(response.content.decode(), field)
    assert 'class="message error"' in block
    assert message in block
    assert not Job.objects.exists()


def test_another_experiments_leftover_values_do_not_refuse_the_chosen_one(
    client_in: Client, tiny_model
) -> None:
    response = client_in.post(PAGE, form(prefix_cache__turns="99", attention__lengths=["nope"]))
    assert response.status_code == 302
    assert Job.objects.get().method == "batching"


def test_a_private_model_of_someone_else_is_not_offered(
    client_in: Client, stranger, store, tiny_model, tiny_model_dir
) -> None:
    store.import_folder(tiny_model_dir, "mallorys-model", parent="tiny-llama", method="lora",
                        extra={"job": 99, **owner_extra(stranger)})  # fmt: skip
    assert "mallorys-model" not in client_in.get(PAGE).content.decode()
    for data in [
        form(model="mallorys-model"),
        form("speculative", speculative__draft_model="mallorys-model"),
    ]:
        assert client_in.post(PAGE, data).status_code == 400
    assert not Job.objects.exists()


def test_a_draft_model_with_another_tokenizer_is_refused(
    client_in: Client, store, tiny_model, tiny_model_dir, tmp_path
) -> None:
    import shutil

    from transformers import AutoTokenizer

    other = tmp_path / "tiny-other"
    shutil.copytree(tiny_model_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<extra-token>"])
    tokenizer.save_pretrained(other)
    store.import_folder(other, "tiny-other", license="MIT")
    response = client_in.post(PAGE, form("speculative", speculative__draft_model="tiny-other"))
    assert response.status_code == 400
    assert "does not share tiny-llama" in field_block(response.content.decode(), "speculative-draft_model")
    assert client_in.post(PAGE, form("speculative", speculative__draft_model="tiny-llama")).status_code == 302


def test_the_form_needs_its_csrf_token(user, tiny_model) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(PAGE, form()).status_code == 403
    assert client.post(PAGE, form(), HTTP_HX_REQUEST="true").status_code == 403
    assert not Job.objects.exists()


def test_another_users_experiment_is_invisible(
    client_in: Client, user, stranger_client: Client, tiny_model
) -> None:
    client_in.post(PAGE, form())
    job = Job.objects.get()
    assert stranger_client.get(f"{PAGE}{job.pk}/").status_code == 404
    for action in ["cancel", "resume"]:
        assert stranger_client.post(f"{PAGE}{job.pk}/{action}/").status_code == 404
    assert stranger_client.get(f"{PAGE}compare/?a={job.pk}&b={job.pk}").status_code == 404
    assert f'data-job="{job.pk}"' not in stranger_client.get(PAGE).content.decode()
    assert f'data-job="{job.pk}"' in client_in.get(PAGE).content.decode()
    assert Job.objects.get(pk=job.pk).status == "queued", "a stranger cannot cancel it"


def test_cancel_and_resume_are_post_only_and_a_queued_experiment_cancels_at_once(
    client_in: Client, tiny_model
) -> None:
    client_in.post(PAGE, form())
    job = Job.objects.get()
    assert client_in.get(f"{PAGE}{job.pk}/cancel/").status_code == 405
    assert client_in.post(f"{PAGE}{job.pk}/cancel/").status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert client_in.post(f"{PAGE}{job.pk}/resume/").status_code == 302
    assert Job.objects.get(pk=job.pk).status == "queued", "an experiment makes no model, so it can run again"


@pytest.mark.parametrize("query", ["", "?a=1", "?a=x&b=2", "?a=99999999999999&b=1"])
def test_compare_without_two_experiments_is_refused(client_in: Client, query: str) -> None:
    response = client_in.get(f"{PAGE}compare/{query}")
    assert response.status_code in (400, 404)


def test_no_post_or_compare_query_gets_a_5xx(client_in: Client, tiny_model) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from tests.playground.test_fuzz import FORM_VALUES, FUZZ, with_keys

    keys = [
        "model",
        "experiment",
        *(f"{k}-{f}" for k, v in TICKED.items() for f in (n.split("-")[1] for n in v)),
    ]
    keys += ["speculative-draft_model", "attention-backends", "prefix_cache-turn_tokens"]
    real = st.fixed_dictionaries(
        {
            "model": st.just("tiny-llama"),
            "experiment": st.sampled_from(["batching", "speculative", "attention"]),
        }
    )

    @FUZZ
    @given(data=st.one_of(with_keys(keys, FORM_VALUES), st.tuples(real, with_keys(keys, FORM_VALUES)).map(
        lambda pair: {**pair[1], **pair[0]})), query=with_keys(["a", "b"], FORM_VALUES))  # fmt: skip
    def check(data: dict[str, Any], query: dict[str, Any]) -> None:
        assert client_in.post(PAGE, data).status_code < 500
        assert client_in.get(f"{PAGE}compare/", query).status_code < 500

    check()
