"""The job forms and the quantize report in a real browser: the fine-tune form shows the chosen method's
fields only (and every field, labelled, without JavaScript); the quantize form's group size only for
int4; the report reads in labels and units, its two halves aligned. Screenshots go to ARTIFACTS."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import manage
from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration

ONLY = {  # a method, and fields that are its own (visible only then)
    "lora": ["lora_rank", "lora_alpha", "target_modules"],
    "dpo": ["dpo_beta"],
    "distill": ["teacher_model", "student_layers", "distill_temperature", "distill_alpha"],
    "prompt_tuning": ["num_virtual_tokens"],
}
SHARED = ["base_model", "dataset", "steps", "learning_rate", "batch_size", "max_seq_len"]


def shot(page, name: str, selector: str = "main") -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(selector).screenshot(path=str(ARTIFACTS / name))


def visible(page, field: str) -> bool:
    return page.locator(f"#field-{field}").is_visible()


def test_the_finetune_form_changes_with_the_method(site: Site, browser) -> None:
    page = logged_in_page(site, browser, "/jobs/new/finetune/")
    assert page.locator('input[name="method"][value="lora"]').is_checked(), "LoRA runs here: preselected"
    legends = page.locator("form.job-form legend").all_inner_texts()
    assert legends == ["Model and data", "Method", "Schedule", "Limits"]
    shot(page, "finetune-form-lora.png")
    for method, own in ONLY.items():
        page.locator(f'input[name="method"][value="{method}"]').check()
        for field in own:
            assert visible(page, field), f"{field} belongs to {method}"
        others = {f for m, fields in ONLY.items() if m != method for f in fields} - set(own)
        for field in others:
            assert not visible(page, field), f"{field} is not {method}'s"
        for field in SHARED:
            assert visible(page, field), f"{field} concerns every method"
        assert not page.locator(".applies").first.is_visible(), "with JS the hidden fields say it instead"
    shot(page, "finetune-form-prompt-tuning.png")
    page.locator('input[name="method"][value="distill"]').check()
    shot(page, "finetune-form-distill.png")


def test_without_javascript_every_field_shows_with_the_methods_it_applies_to(site: Site, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900}, java_script_enabled=False)
    page.goto(site.login_link())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site.url}/models/")
    page.goto(f"{site.url}/jobs/new/finetune/")
    for field in [f for fields in ONLY.values() for f in fields] + SHARED:
        assert visible(page, field), field
    assert "applies to: dpo" in page.locator("#field-dpo_beta").inner_text()
    assert "applies to" not in page.locator("#field-steps").inner_text()
    shot(page, "finetune-form-no-js.png")


def test_the_quantize_form_asks_for_a_group_size_only_for_int4(site: Site, browser) -> None:
    page = logged_in_page(site, browser, "/jobs/new/quantize/")
    assert page.locator('input[name="method"][value="int8_weight"]').is_checked()
    assert not visible(page, "group_size")
    page.locator('input[name="method"][value="int4_weight"]').check()
    assert visible(page, "group_size")
    shot(page, "quantize-form-int4.png")


def test_a_sent_form_says_it_is_queuing_and_its_button_waits(site: Site, browser) -> None:
    """While the server checks a job (its answer is held back a second here), the button waits and says
    so: a second click cannot queue it twice. The answer then shows the problem beside its field."""
    page = logged_in_page(site, browser, "/jobs/new/quantize/")

    def slow(route) -> None:
        if route.request.method == "POST":
            time.sleep(1.0)
        route.continue_()

    page.route("**/jobs/new/quantize/", slow)
    # What the button shows just after the submit, kept across the navigation in sessionStorage.
    page.evaluate(
        """() => document.addEventListener("submit", () => setTimeout(() => {
             const b = document.querySelector("form[data-busy] button[type=submit]");
             sessionStorage.setItem("busy", JSON.stringify([b.disabled, b.textContent]));
           }, 50))"""
    )
    page.locator("#id_output_name").fill("Not A Name!")
    page.get_by_role("button", name="Queue the job").click()
    page.get_by_text("Invalid model name 'Not A Name!'").wait_for()  # beside the name, on the answer
    assert page.evaluate("JSON.parse(sessionStorage.getItem('busy'))") == [True, "Checking and queuing…"]
    assert page.get_by_role("button", name="Queue the job").is_enabled()  # the answer's page: ready again


REPORT = {
    "device": "cpu", "prompts": 3, "new_tokens": 32, "top1_agreement": 0.981, "mean_kl": 0.0123,
    "positions": 40, "memory_measured_as": "parameter and buffer bytes of the loaded model",
    "parent": {"disk_bytes": 269_060_000, "memory_bytes": 538_000_000, "dtype": "bfloat16",
               "perplexity": 12.5, "loss": 2.526, "perplexity_tokens": 4096, "tokens_per_s": 20.0,
               "ttft_s": 0.052, "decode": "float weights"},
    "quantized": {"disk_bytes": 166_000_000, "memory_bytes": 300_000_000, "dtype": "bfloat16",
                  "perplexity": 12.6, "loss": 2.534, "perplexity_tokens": 4096, "tokens_per_s": 12.0,
                  "ttft_s": 0.081, "decode": "torchao weights on torchao's kernels"},
    "size_ratio": 1.62, "memory_ratio": 1.79, "perplexity_change_pct": 0.8, "speed_ratio": 0.6,
    "summary": "Worth it: written by an older version.",
}  # fmt: skip
RAW_KEYS = ["disk_bytes", "memory_bytes", "ttft_s", "tokens_per_s", "perplexity_tokens", "size_ratio",
            "top1_agreement", "mean_kl", "new_tokens"]  # fmt: skip


def a_finished_quantize_job(site: Site) -> int:
    """A succeeded int8 job holding REPORT, made in the site's own database (no minutes of quantizing)."""
    code = (
        "import json; from django.contrib.auth import get_user_model; "
        "from playground.jobs.models import Job; "
        "job = Job.objects.create(owner=get_user_model().objects.get(username='admin'), "
        "kind='quantize', method='int8_weight', base_model='smollm2-135m-instruct', "
        "output_name='e2e-report', status='succeeded', "
        f"report=json.loads({json.dumps(json.dumps(REPORT))})); print(job.pk)"
    )
    return int(manage(site.env, "shell", "-c", code).strip().splitlines()[-1])


def test_the_quantize_report_reads_in_labels_and_units(site: Site, browser) -> None:
    page = logged_in_page(site, browser, f"/jobs/{a_finished_quantize_job(site)}/")
    report = page.locator("#job-report")
    text = report.inner_text()
    for raw in RAW_KEYS:
        assert raw not in text, raw
    for label in ["Size on disk", "256.6 MB", "Decode speed", "20.0 tokens/s", "52 ms", "98.1 %"]:
        assert label in text, label
    summary = page.locator("#report-summary").inner_text()
    assert summary.startswith("A trade-off: 1.6x smaller on disk"), summary
    assert "1.7x slower on this CPU (the parent ran float weights" in summary, "it says which kernel ran"
    bars = page.locator('svg[data-chart="report"] text').all_text_contents()
    assert "Size on disk" in bars
    assert any(b.endswith("% of the parent") for b in bars)
    assert not any("perplexity_tokens" in b or "Held-out tokens" in b for b in bars)
    boxes = [
        page.locator(selector).first.bounding_box()
        for selector in (
            "#report-side-by-side th",
            "#report-facts th",
            "#report-side-by-side td",
            "#report-facts td",
        )
    ]
    assert all(boxes)
    side_label, fact_label, side_value, fact_value = boxes
    assert abs(side_label["x"] - fact_label["x"]) < 1
    assert abs(side_label["width"] - fact_label["width"]) < 1
    assert abs(side_value["x"] - fact_value["x"]) < 1, "the two halves' columns line up"
    shot(page, "quantize-report.png", "#job-report")
