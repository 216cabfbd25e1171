"""The fine-tune and quantize forms: the chosen method's fields only (tagged from the config's own
description, all shown without JavaScript), every problem reported in one submit beside its field, the
other methods' values ignored; and the report and settings a job shows: labels and units, never keys, a
verdict that follows the numbers, only the settings of the job's method."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from playground.jobs.models import Job
from playground.jobs.services import checks
from tests.playground.jobs.conftest import worker_row

pytestmark = pytest.mark.django_db


def field_div(html: str, name: str) -> str:
    """The <div class="field"> of one form field, with its label, help and errors."""
    assert f'id="field-{name}"' in html, f"no field {name}"
    return re.split(r'<div class="field|</fieldset>', html.split(f'id="field-{name}"')[1])[0]


def errors_in(div: str) -> list[str]:
    return re.findall(r'<p class="message error">(.*?)</p>', div, re.S)


def sample_dataset(client: Client) -> int:
    response = client.post(reverse("jobs:dataset-sample"), {"sample": "pirate-instructions"})
    return int(response["Location"].rstrip("/").rsplit("/", 1)[1])


# --- the form as it opens ------------------------------------------------------------------------------
def test_method_specific_fields_carry_the_methods_the_config_gives_them(
    client_in: Client, tiny_model
) -> None:
    html = client_in.get(reverse("jobs:new-finetune")).content.decode()
    rows = [r for r in checks.finetune_rows() if r["methods"]]
    assert {r["name"] for r in rows} >= {"lora_rank", "dpo_beta", "num_virtual_tokens", "teacher_model"}
    for row in rows:
        div = field_div(html, row["name"])
        assert f'data-methods="{" ".join(row["methods"])}"' in div, row["name"]
        assert f"applies to: {', '.join(row['methods'])}" in div, "without JavaScript the label says so"
    for shared in ("steps", "learning_rate", "batch_size", "base_model", "dataset", "output_name"):
        assert "data-methods" not in field_div(html, shared), f"{shared} concerns every method"
    assert " hidden" not in html.split("<form")[1], "the page hides nothing itself: without JS all show"
    quantize = client_in.get(reverse("jobs:new-quantize")).content.decode()
    assert 'data-methods="int4_weight"' in field_div(quantize, "group_size")


def test_the_finetune_form_groups_its_fields_under_legends(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("jobs:new-finetune")).content.decode()
    legends = re.findall(r'<fieldset class="field-group" id="group-(\w+)">\s*<legend>([^<]+)</legend>', html)
    assert [name for name, _ in legends] == ["data", "method", "schedule", "limits"]
    groups = {name: html.split(f'id="group-{name}"')[1].split("</fieldset>")[0] for name, _ in legends}
    for name, fields in {
        "data": ["base_model", "dataset", "output_name", "eval_fraction", "sample_prompts"],
        "method": ["method", "teacher_model", "lora_rank", "dpo_beta", "distill_alpha"],
        "schedule": ["learning_rate", "lr_scheduler", "warmup_steps"],
        "limits": ["steps", "epochs", "batch_size", "max_seq_len"],
    }.items():
        for field in fields:
            assert f'id="field-{field}"' in groups[name], (field, name)
    explained = "Full supervised fine-tuning: every weight is trained."
    assert explained in groups["method"], "each method is explained in a line"


def test_a_method_that_runs_here_is_preselected(client_in: Client, tiny_model) -> None:
    worker_row("cpu@a", "cpu", ["cpu"])
    html = client_in.get(reverse("jobs:new-finetune")).content.decode()
    assert re.search(r'<input type="radio" name="method" value="lora"[^>]* checked', html)
    quantize = client_in.get(reverse("jobs:new-quantize")).content.decode()
    assert re.search(r'<input type="radio" name="method" value="int8_weight"[^>]* checked', quantize)
    assert checks.default_method("finetune", {"lora": "cannot run"}) == "sft", "else the first that can"
    assert checks.default_method("quantize", {}) == "int8_weight"


# --- one submit, every problem ---------------------------------------------------------------------------
def test_a_bad_name_and_a_bad_group_size_are_both_reported_in_one_submit(
    client_in: Client, tiny_model
) -> None:
    form = {"base_model": "tiny-llama", "method": "int4_weight", "group_size": 48, "output_name": "Bad Name!"}
    html = client_in.post(reverse("jobs:new-quantize"), form).content.decode()
    group = errors_in(field_div(html, "group_size"))
    assert len(group) == 1
    assert "Group size 48 does not divide" in group[0]
    assert errors_in(field_div(html, "output_name")), "the name is refused in the same answer"
    assert errors_in(field_div(html, "method")) == [], "each problem beside its own field"
    assert "To fix, each said beside its field: Name of the result, Group size." in html
    taken = client_in.post(reverse("jobs:new-quantize"), {**form, "output_name": "tiny-llama"})
    html = taken.content.decode()
    assert "exists already" in errors_in(field_div(html, "output_name"))[0]
    assert errors_in(field_div(html, "group_size"))
    assert not Job.objects.exists()


def test_the_finetune_form_reports_every_problem_at_once(client_in: Client, tiny_model) -> None:
    worker_row("cpu@a", "cpu", ["cpu"])
    form = {
        "base_model": "tiny-llama",
        "method": "qlora",
        "output_name": "Bad Name!",
        "lora_rank": "0",
        "steps": "2",
    }  # no dataset either
    html = client_in.post(reverse("jobs:new-finetune"), form).content.decode()
    assert errors_in(field_div(html, "output_name"))
    assert errors_in(field_div(html, "dataset"))
    assert "greater than or equal to 1" in errors_in(field_div(html, "lora_rank"))[0]
    assert "QLoRA needs a CUDA GPU" in errors_in(field_div(html, "method"))[0], "the workers' answer too"
    assert not Job.objects.exists()


def test_the_other_methods_values_are_ignored_not_refused(client_in: Client, tiny_model) -> None:
    dataset = sample_dataset(client_in)
    form = {"base_model": "tiny-llama", "method": "sft", "dataset": dataset, "steps": "2",
            "lora_rank": "not a number", "dpo_beta": "999", "teacher_model": "tiny-llama",
            "target_modules": "no such layer!"}  # fmt: skip
    response = client_in.post(reverse("jobs:new-finetune"), form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    params = Job.objects.get().params
    assert params["steps"] == 2
    for other in ("lora_rank", "dpo_beta", "teacher_model", "target_modules", "num_virtual_tokens"):
        assert other not in params, other
    quantize = {"base_model": "tiny-llama", "method": "bf16", "group_size": "48"}
    assert client_in.post(reverse("jobs:new-quantize"), quantize).status_code == 302
    assert "group_size" not in Job.objects.get(kind="quantize").params, "bf16 has no groups"


# --- what a job shows -----------------------------------------------------------------------------------
REPORT = {
    "device": "cpu",
    "prompts": 3,
    "new_tokens": 32,
    "parent": {"disk_bytes": 269_060_000, "safetensors_bytes": 269_060_000, "memory_bytes": 538_000_000,
               "dtype": "bfloat16", "perplexity": 12.5, "loss": 2.526, "perplexity_tokens": 4096,
               "tokens_per_s": 20.0, "ttft_s": 0.052, "decode": "float weights"},
    "quantized": {"disk_bytes": 166_000_000, "safetensors_bytes": 166_000_000, "memory_bytes": 300_000_000,
                  "dtype": "bfloat16", "perplexity": 12.6, "loss": 2.534, "perplexity_tokens": 4096,
                  "tokens_per_s": 12.0, "ttft_s": 0.081, "decode": "torchao weights on torchao's kernels"},
    "top1_agreement": 0.981,
    "mean_kl": 0.0123,
    "positions": 40,
    "size_ratio": 1.62,
    "memory_ratio": 1.79,
    "perplexity_change_pct": 0.8,
    "speed_ratio": 0.6,
    "summary": "Worth it: stored long ago.",
}  # fmt: skip


def report_section(client: Client, job: Job) -> str:
    html = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    section = html.split('id="job-report"')[1].split("</section>")[0]
    return re.sub(r"<script.*?</script>", "", section, flags=re.S)  # the chart's data, not shown as text


def quantize_job(user, report: dict, **fields) -> Job:
    values = {"kind": "quantize", "method": "int8_weight", "base_model": "tiny-llama", "output_name": "q-1",
              "status": "succeeded", "report": report, **fields}  # fmt: skip
    return Job.objects.create(owner=user, **values)


def test_the_quantize_report_shows_labels_and_units_never_raw_keys(client_in: Client, user) -> None:
    section = report_section(client_in, quantize_job(user, REPORT))
    rows = dict(re.findall(r'<th scope="row">([^<]+)</th><td class="num">([^<]+)</td>', section))
    assert rows["Size on disk"] == "256.6 MB"
    assert rows["Memory once loaded"] == "513.1 MB"
    assert rows["Decode speed"] == "20.0 tokens/s"
    assert rows["Time to first token"] == "52 ms"
    assert rows["Perplexity on held-out text"] == "12.5"
    assert rows["Loss on held-out text"] == "2.526 nats/token"
    assert "98.1 %" in section, "a share in percent"
    assert "0.0123 nats" in section, "a small divergence keeps its digits"
    assert "1.6x smaller" in section
    assert "1.7x slower" in section
    for key in [*REPORT, *REPORT["parent"]]:
        assert f">{key}<" not in section, f"the raw key {key} is on the page"
        assert "_" not in key or key not in section, f"the raw key {key} is on the page"
    assert "Safetensors weights" not in section, "without a GGUF file the size on disk is said once"
    assert section.count("<table") == 1, "the measures and the facts share one table, so they line up"
    assert 'colspan="3"' in section


def test_the_verdict_follows_the_numbers_not_the_stored_sentence(client_in: Client, user) -> None:
    from llmcore.quantize import summary_sentence

    worse = {**REPORT["quantized"], "disk_bytes": 300_000_000, "memory_bytes": 600_000_000}
    section = report_section(client_in, quantize_job(user, {**REPORT, "quantized": worse}))
    verdict = re.search(r'<p id="report-summary"><strong>(.*?)</strong>', section).group(1)
    assert verdict.startswith("Not worth it:"), verdict
    assert "1.1x bigger on disk" in verdict
    assert "1.7x slower" in verdict
    assert "stored long ago" not in section
    # smaller but slower: a trade-off, and it says which kernel each side ran
    slower = summary_sentence(REPORT)
    assert slower.startswith("A trade-off: 1.6x smaller on disk, 1.8x less memory, but ")
    assert "the parent ran float weights, the quantized model torchao weights on torchao's kernels" in slower
    same_speed = {**REPORT["quantized"], "tokens_per_s": 20.2, "decode": "float weights"}
    fine = summary_sentence({**REPORT, "quantized": same_speed})
    assert fine.startswith("Worth it:")
    assert "about as fast on this CPU;" in fine
    assert "the parent ran" not in fine, "the same kernel on both sides: nothing to say"
    lossy = {**REPORT["quantized"], "perplexity": 15.5, "tokens_per_s": 30.0}
    assert summary_sentence({**REPORT, "quantized": lossy}).startswith("Not worth it:"), "perplexity +24 %"


def test_the_chart_shows_each_measure_as_a_share_of_the_parent(client_in: Client, user) -> None:
    import json

    html = client_in.get(reverse("jobs:detail", args=[quantize_job(user, REPORT).pk])).content.decode()
    bars = json.loads(html.split('id="job-report-bars" type="application/json">')[1].split("</script>")[0])
    labels = [b["label"] for b in bars]
    assert labels[:3] == ["Size on disk", "Memory once loaded", "Perplexity on held-out text"]
    assert "Held-out tokens" not in labels, "the same count on both sides is no comparison"
    speed = next(b for b in bars if b["label"] == "Decode speed")
    assert (round(speed["share"], 2), speed["direction"]) == (0.6, -1)


def test_only_the_methods_settings_show_on_the_job_and_model_pages(
    client_in: Client, user, store, tiny_model, tiny_model_dir
) -> None:
    from playground.catalog.services import owner_extra

    old = quantize_job(user, {}, method="bf16", params={"group_size": None, "devices_ok": ["cpu"]})
    settings = client_in.get(reverse("jobs:detail", args=[old.pk])).content.decode().split("<h2>Settings")[1]
    assert "group_size" not in settings
    assert "Group size" not in settings, "bf16 has no groups"
    int4 = quantize_job(user, {}, method="int4_weight", params={"group_size": 64}, output_name="q-2")
    settings = client_in.get(reverse("jobs:detail", args=[int4.pk])).content.decode().split("<h2>Settings")[1]
    assert "<dt>Group size</dt><dd>64</dd>" in settings
    final = {"final_loss": 1.23456, "train_seconds": 75.25, "tokens_per_s": 812.5}
    lineage = {"job": old.pk, "kind": "finetune", "final_metrics": final,
               "hyperparameters": {"lora_rank": 8, "steps": 3, "dpo_beta": 0.1}}  # fmt: skip
    store.import_folder(tiny_model_dir, "tiny-sft", parent="tiny-llama", method="sft",
                        extra={**lineage, **owner_extra(user)})  # fmt: skip
    page = client_in.get(reverse("catalog:detail", args=["tiny-sft"])).content.decode()
    facts = page.split('id="lineage"')[1].split("</section>")[0]
    assert "<dt>Steps</dt><dd>3</dd>" in facts
    assert "LoRA rank" not in facts, "an sft job's other methods' settings are not its own"
    assert "DPO beta" not in facts
    assert "<dt>Final loss</dt><dd>1.235 nats/token</dd>" in facts
    assert "<dt>Training time</dt><dd>75.2 s</dd>" in facts
    assert "<dt>Training speed</dt><dd>812.5 tokens/s</dd>" in facts
    assert "final_loss" not in facts
