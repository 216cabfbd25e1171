"""The jobs pages: login and ownership, the forms refusing what cannot run, routing, cancel and resume."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from playground.catalog.services import owner_extra
from playground.jobs.models import Dataset, Job
from playground.jobs.services.jobs import cancel_job, choose_queue, reap_lost_jobs, resume_job
from tests.playground.jobs.conftest import INSTRUCTIONS, worker_row

pytestmark = pytest.mark.django_db


def a_job(owner, **fields) -> Job:
    defaults = {"kind": "quantize", "method": "bf16", "base_model": "tiny-llama", "output_name": "out-1",
                "task_id": "t1"}  # fmt: skip
    return Job.objects.create(owner=owner, **{**defaults, **fields})


# --- routing ------------------------------------------------------------------------------------------
def test_the_gpu_queue_is_chosen_only_while_a_gpu_worker_is_alive(settings) -> None:
    settings.WORKER_HEARTBEAT_TIMEOUT = 30
    assert choose_queue() == "cpu", "no worker at all"
    worker_row("cpu@a", "cpu", ["cpu"])
    assert choose_queue() == "cpu", "only a CPU worker"
    stale = worker_row("gpu@b", "cuda", ["cpu", "gpu"], age_seconds=120)
    assert choose_queue() == "cpu", "a GPU worker whose heartbeat is stale is gone"
    stale.delete()
    worker_row("gpu@c", "cuda", ["cpu", "gpu"])
    assert choose_queue() == "gpu"
    assert choose_queue(devices_ok=["cpu"]) == "cpu", "a job that cannot run on the GPU stays on cpu"


# --- login and ownership ------------------------------------------------------------------------------
def test_strangers_are_sent_to_log_in(client: Client, user) -> None:
    job = a_job(user)
    for url in [reverse("jobs:list"), reverse("jobs:detail", args=[job.pk]), reverse("jobs:new-quantize"),
                reverse("jobs:datasets")]:  # fmt: skip
        response = client.get(url)
        assert response.status_code == 302
        assert "/login/" in response.url


def test_another_users_job_and_dataset_are_404(user, stranger_client: Client, data_dir) -> None:
    job = a_job(user)
    dataset = Dataset.objects.create(owner=user, name="d", file_name="x.jsonl", original_suffix=".jsonl")
    for name in ["jobs:detail", "jobs:status"]:
        assert stranger_client.get(reverse(name, args=[job.pk])).status_code == 404
    for name in ["jobs:cancel", "jobs:resume"]:
        assert stranger_client.post(reverse(name, args=[job.pk])).status_code == 404
    assert stranger_client.get(reverse("jobs:dataset", args=[dataset.pk])).status_code == 404
    assert Job.objects.get(pk=job.pk).status == "queued", "a stranger cannot cancel it"
    assert "out-1" not in stranger_client.get(reverse("jobs:list")).content.decode()


def test_cancel_and_resume_are_post_only(client_in: Client, user) -> None:
    job = a_job(user)
    assert client_in.get(reverse("jobs:cancel", args=[job.pk])).status_code == 405


# --- forms --------------------------------------------------------------------------------------------
def test_the_quantize_form_lists_only_catalog_models_and_every_method(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("jobs:new-quantize")).content.decode()
    assert '<option value="tiny-llama"' in html
    for method in ["int8_weight", "int8_dynamic", "int4_weight", "bf16", "fp16", "gguf_q8_0"]:
        assert f'value="{method}"' in html
    response = client_in.post(reverse("jobs:new-quantize"), {"base_model": "../etc", "method": "bf16"})
    assert response.status_code == 200
    assert "not one of the available choices" in response.content.decode()
    assert not Job.objects.exists()


def test_a_config_that_cannot_run_is_explained_and_nothing_is_queued(client_in: Client, tiny_model) -> None:
    response = client_in.post(
        reverse("jobs:new-quantize"), {"base_model": "tiny-llama", "method": "int4_weight", "group_size": 48}
    )
    html = response.content.decode()
    assert "Cannot run on any connected worker" in html
    assert "48" in html
    assert not Job.objects.exists()


def test_a_valid_quantize_form_queues_a_job_on_the_cpu_queue(
    client_in: Client, tiny_model, user, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_in.post(
            reverse("jobs:new-quantize"), {"base_model": "tiny-llama", "method": "bf16"}
        )
    job = Job.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("jobs:detail", args=[job.pk])
    assert (job.status, job.queue, job.owner, job.output_name) == ("queued", "cpu", user, "tiny-llama-bf16-1")
    assert len(callbacks) == 1, "the task is sent once the row is committed"
    page = client_in.get(response.url).content.decode()
    assert 'hx-trigger="every 2s"' in page, "a queued job's page polls for progress"
    assert "Cancel" in page


def test_qlora_without_a_cuda_worker_is_refused_with_the_reason(
    client_in: Client, tiny_model, user, data_dir
) -> None:
    from playground.jobs.services.datasets import save_dataset

    dataset = save_dataset(user, INSTRUCTIONS, "pirate.jsonl")
    worker_row("cpu@a", "cpu", ["cpu"])
    form = {"base_model": "tiny-llama", "method": "qlora", "dataset": dataset.pk, "steps": 2}
    html = client_in.post(reverse("jobs:new-finetune"), form).content.decode()
    assert "QLoRA needs a CUDA GPU" in html
    html = client_in.post(reverse("jobs:new-finetune"), {**form, "method": "dpo"}).content.decode()
    assert "dpo needs a preference dataset" in html
    assert not Job.objects.exists()


# --- cancel, resume, lost workers ---------------------------------------------------------------------
def test_a_queued_job_is_cancelled_at_once_and_can_be_resumed(
    client_in: Client, user, model_dir, django_capture_on_commit_callbacks
) -> None:
    job = a_job(user)
    client_in.post(reverse("jobs:cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.finished
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_in.post(reverse("jobs:resume", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "queued"
    assert job.task_id != "t1", "a resumed job waits for a new message"
    assert len(callbacks) == 1


def test_a_running_job_is_asked_to_stop(user) -> None:
    job = cancel_job(a_job(user, status="running"))
    assert job.status == "running"
    assert job.cancel_requested
    with pytest.raises(Exception, match="Only a failed or cancelled job"):
        resume_job(job)


def test_a_job_whose_worker_is_gone_is_marked_failed_worker_lost(user, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    settings.JOB_HEARTBEAT_TIMEOUT = 10
    old = timezone.now() - timedelta(seconds=30)  # stale (over 10 s), not yet very stale (50 s)
    alive = worker_row("alive@a", "cpu", ["cpu"])
    lost = a_job(user, status="running", worker="gone@b", heartbeat=old, output_name="a")
    busy = a_job(user, status="running", worker=alive.hostname, heartbeat=old, output_name="b")
    fresh = a_job(user, status="running", worker="gone@b", heartbeat=timezone.now(), output_name="c")
    assert reap_lost_jobs() == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == "failed"
    assert lost.error.startswith("Worker lost")
    assert Job.objects.get(pk=busy.pk).status == "running", "its worker is alive: a redelivery may continue"
    assert Job.objects.get(pk=fresh.pk).status == "running"
    assert reap_lost_jobs(restarted_worker="gone@b") == [fresh.pk], "a restarted worker runs nothing yet"


# --- compare with the parent --------------------------------------------------------------------------
def test_a_child_is_compared_with_its_parent_on_the_same_prompts(
    client_in: Client, user, store, tiny_model, tiny_model_dir
) -> None:
    extra = {"job": 1, **owner_extra(user)}  # alice's own fine-tune
    store.import_folder(tiny_model_dir, "tiny-child", parent="tiny-llama", method="lora", extra=extra)
    page = client_in.get(reverse("jobs:compare", args=["tiny-child"])).content.decode()
    assert 'hx-trigger="load"' in page, "the page answers at once and fetches the numbers"
    html = client_in.get(
        reverse("jobs:compare", args=["tiny-child"]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'id="compare-numbers"' in html
    assert html.count("<pre>") == 9, "three prompts, each with the prompt and two answers"
    for name in ["tiny-llama", "tiny-child"]:
        assert f"<td>{name}</td>" in html
    assert client_in.get(reverse("jobs:compare", args=["tiny-llama"])).status_code == 404, "no parent"
    assert client_in.get("/jobs/compare/..%2F..%2Fx/").status_code == 404
    assert client_in.get("/jobs/compare/Bad!Name/").status_code == 404


# --- the job page -------------------------------------------------------------------------------------
def test_the_job_page_shows_curves_samples_and_the_report_with_model_text_escaped(
    client_in: Client, user
) -> None:
    job = a_job(
        user,
        status="succeeded",
        output_model="tiny-bf16",
        metrics=[
            {"step": 1, "loss": 3.2, "lr": 1e-4},
            {"step": 2, "loss": 2.9, "eval_loss": 3.0, "lr": 5e-5},
        ],
        samples=[{"step": 2, "prompt": "Hi", "output": "<script>alert(1)</script>"}],
        report={
            "parent": {"disk_bytes": 2000, "perplexity": 10.0},
            "quantized": {"disk_bytes": 1000, "perplexity": 10.5},
            "size_ratio": 2.0,
            "summary": "Worth it: 2.0x smaller.",
        },  # fmt: skip
    )
    html = client_in.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'data-chart="loss"' in html
    assert 'data-chart="lr"' in html
    assert '"eval_loss": 3.0' in html, "the curves' points are embedded as JSON for the chart script"
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "A trade-off: 2.0x smaller on disk, but 5.0 % higher perplexity." in html, "from the numbers"
    assert "Worth it: 2.0x smaller." not in html, "the stored sentence gives way to the numbers' verdict"
    assert '<th scope="row">Size on disk</th><td class="num">2.0 KB</td><td class="num">1000 B</td>' in html
    assert "every 2s" not in html, "a finished job does not poll"
    assert 'href="/models/tiny-bf16/"' in html


def test_the_finetune_form_offers_every_setting_with_its_help(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("jobs:new-finetune")).content.decode()
    fields = [
        "base_model",
        "dataset",
        "teacher_model",
        "student_layers",
        "steps",
        "epochs",
        "learning_rate",
        "lr_scheduler",
        "warmup_steps",
        "batch_size",
        "grad_accum",
        "max_seq_len",
        "seed",
        "eval_fraction",
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "num_virtual_tokens",
        "dpo_beta",
        "distill_temperature",
        "distill_alpha",
        "checkpoint_every",
        "sample_every",
        "sample_prompts",
        "output_name",
    ]
    for field in fields:
        assert f'name="{field}"' in html, field
    for method in ["sft", "lora", "qlora", "prompt_tuning", "dpo", "distill"]:
        assert f'value="{method}"' in html
    assert 'value="q_proj,k_proj,v_proj,o_proj"' in html, "the runner's defaults fill the form"
    assert html.count('class="hint"') > 25, "every field has its line of help"


def test_the_finetune_form_is_built_from_the_configs_own_settings(user, tiny_model) -> None:
    """FinetuneConfig declares each setting's label, bounds and help once (llmcore.config); the form's
    fields carry exactly those, and a value past a bound is refused beside its field."""
    from playground.jobs.forms import FinetuneForm
    from playground.jobs.services import checks

    rows = checks.finetune_rows()
    assert len(rows) >= 20
    form = FinetuneForm(models=["tiny-llama"], methods={"lora": "LoRA"}, owner=user)
    for row in rows:
        field = form.fields[row["name"]]
        assert (field.label, field.help_text) == (row["label"], row["hint"])
        if row["min"] is not None:
            assert (field.min_value, field.max_value) == (row["min"], row["max"]), row["name"]
    batch = next(r for r in rows if r["name"] == "batch_size")
    posted = FinetuneForm(
        {"batch_size": str(batch["max"] + 1)}, models=["tiny-llama"], methods={}, owner=user
    )
    assert not posted.is_valid()
    assert f"less than or equal to {batch['max']}" in posted.errors["batch_size"][0]
    # empty: the method's own learning rate, which the runner then uses
    assert form.fields["learning_rate"].initial is None
    assert "sft 2e-05" in form.fields["learning_rate"].help_text


def test_the_forms_say_which_methods_cannot_run_on_the_live_workers(client_in: Client, tiny_model) -> None:
    worker_row("cpu@a", "cpu", ["cpu"])
    html = client_in.get(reverse("jobs:new-finetune")).content.decode()
    notes = html.split('id="method-notes"')[1].split("</div>")[0]
    assert "<code>qlora</code>" in notes
    assert "QLoRA needs a CUDA GPU" in notes
    assert "<code>lora</code>" not in notes, "LoRA runs on a CPU worker"


def form_values(html: str) -> dict[str, str]:
    """What a browser submits for an untouched form: each input's value, the selected options, textareas."""
    import re

    values: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name and value and ('type="radio"' not in tag or " checked" in tag):
            values[name.group(1)] = value.group(1)
    for name, body in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', body) or re.search(
            r'value="([^"]*)"', body
        )
        values[name] = chosen.group(1) if chosen else ""
    for name, body in re.findall(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        values[name] = body.strip()
    return values


def test_the_finetune_form_as_it_opens_queues_a_job_with_samples(client_in: Client, tiny_model) -> None:
    """Every default the form shows must pass its own validation (a browser submits them all)."""
    dataset = client_in.post(reverse("jobs:dataset-sample"), {"sample": "pirate-instructions"})
    dataset_id = int(dataset["Location"].rstrip("/").rsplit("/", 1)[1])
    html = client_in.get(reverse("jobs:new-finetune") + f"?dataset={dataset_id}").content.decode()
    values = {**form_values(html), "method": "lora"}
    assert values["dataset"] == str(dataset_id)
    response = client_in.post(reverse("jobs:new-finetune"), values)
    assert response.status_code == 302, response.content.decode()[-2000:]
    job = Job.objects.get()
    assert job.params["sample_every"] == 10
    assert len(job.params["sample_prompts"]) == 2


def test_the_live_block_is_sent_again_only_when_something_on_it_changed(client_in: Client, user) -> None:
    import re

    job = a_job(user, status="running", step=2, total=10, metrics=[{"step": 2, "loss": 3.0}])
    url = reverse("jobs:detail", args=[job.pk])

    def poll(version: str | None = None):
        return client_in.get(url, {"v": version} if version else {}, HTTP_HX_REQUEST="true")

    def version_in(html: str) -> str:
        found = re.search(r"hx-vals='\{\"v\": \"([0-9a-f]{16})\"\}'", html)
        assert found, "a running job's block polls with the version it shows"
        return found.group(1)

    first = poll()
    assert first.status_code == 200
    html = first.content.decode()
    assert html.lstrip().startswith('<div id="job-live"')
    assert "every 2s" in html
    assert "Step 2 of 10" in html
    version = version_in(html)
    assert poll(version).status_code == 204, "nothing changed: htmx keeps the block"
    assert version_in(client_in.get(url).content.decode()) == version, "the full page shows the same version"

    Job.objects.filter(pk=job.pk).update(step=3, metrics=[{"step": 2, "loss": 3.0}, {"step": 3, "loss": 2.5}])
    changed = poll(version)
    assert changed.status_code == 200
    assert "Step 3 of 10" in changed.content.decode()
    newer = version_in(changed.content.decode())
    assert newer != version
    assert poll(newer).status_code == 204

    Job.objects.filter(pk=job.pk).update(status="succeeded", step=10)
    done = poll(newer)
    assert done.status_code == 200
    assert "every 2s" not in done.content.decode(), "a finished job's block stops polling"


def test_the_form_notes_ask_for_the_live_workers_once(tiny_model, django_assert_num_queries) -> None:
    from playground.jobs.services import checks

    worker_row("cpu@a", "cpu", ["cpu"])
    for kind in ("quantize", "finetune"):
        with django_assert_num_queries(1):  # the worker heartbeats; one per method before
            checks.method_notes(kind, "tiny-llama")
