"""A first fine-tune in a real browser on the real default model: the shipped sample in one click, the form,
live progress with the loss curve, and the new model's catalog page with its lineage."""

from __future__ import annotations

import re
import uuid

import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.conftest import REAL_MODEL_STORE
from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration
FINISHED = "['succeeded', 'failed', 'cancelled'].includes(document.querySelector('#job-status')?.textContent)"


def test_a_lora_job_from_the_sample_set_runs_live_and_opens_in_the_catalog(site: Site, browser) -> None:
    from llmcore.store import ModelStore

    name = f"e2e-lora-{uuid.uuid4().hex[:6]}"
    page = logged_in_page(site, browser, "/jobs/datasets/")
    page.get_by_role("button", name="Use pirate-instructions").click()
    page.wait_for_url(re.compile(r"/jobs/datasets/\d+/$"))
    assert "instruction" in page.locator("main").inner_text()
    page.get_by_role("link", name="Fine-tune with it").click()
    page.wait_for_url(re.compile(r"/jobs/new/finetune/\?dataset=\d+"))
    page.locator("#id_base_model").select_option(DEFAULT_MODEL)
    page.locator('input[name="method"][value="lora"]').check()
    page.locator("#id_steps").fill("3")
    page.locator("#id_batch_size").fill("2")
    page.locator("#id_max_seq_len").fill("128")
    page.locator("#id_output_name").fill(name)
    page.get_by_role("button", name="Queue the job").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    try:
        page.locator("#job-progress").wait_for()
        page.wait_for_function(FINISHED, timeout=900_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jobs-finetune.png"), full_page=True)
        status = page.locator("#job-status").text_content()
        assert status == "succeeded", page.locator("#job-live").inner_text()
        assert page.locator('svg[data-chart="loss"] path').count() > 0, "the loss curve is drawn"
        page.locator("#job-output").get_by_role("link", name=name).click()
        page.wait_for_url(f"**/models/{name}/")
        lineage = page.locator("#lineage")
        assert lineage.get_by_role("link", name=DEFAULT_MODEL).is_visible(), "the parent is linked"
        assert "pirate_instructions.jsonl (60 rows)" in lineage.inner_text()
        assert page.locator("#downloads").get_by_text("the peft adapter").is_visible()
    finally:
        store = ModelStore(REAL_MODEL_STORE)  # the e2e site shares the real-model store: leave it as found
        if store.exists(name):
            store.remove(name)
