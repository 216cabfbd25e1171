"""The jobs pages in a real browser on the real default model: queue a quantize job from the form, watch
its progress live, read the report, and open the new model's catalog page with its lineage."""

from __future__ import annotations

import re
import uuid

import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.conftest import REAL_MODEL_STORE
from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration


def test_a_quantize_job_from_the_form_runs_live_and_joins_the_catalog(site: Site, browser) -> None:
    from llmcore.store import ModelStore

    name = f"e2e-bf16-{uuid.uuid4().hex[:6]}"
    page = logged_in_page(site, browser, "/jobs/")
    page.get_by_role("link", name="New quantize").click()
    page.locator("#id_base_model").select_option(DEFAULT_MODEL)
    page.locator('input[name="method"][value="bf16"]').check()
    page.locator("#id_output_name").fill(name)
    page.get_by_role("button", name="Queue the job").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    try:
        # The page polls while the job is queued or running; the status changes without a reload.
        page.locator("#job-progress").wait_for()
        finished = "['succeeded', 'failed', 'cancelled']"
        page.wait_for_function(
            f"{finished}.includes(document.querySelector('#job-status')?.textContent)",
            timeout=900_000,
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jobs-quantize.png"), full_page=True)
        status = page.locator("#job-status").text_content()
        assert status == "succeeded", page.locator("#job-live").inner_text()
        assert page.locator("#report-summary").inner_text().strip(), "the report ends with its summary"
        assert page.locator("#job-report table tr").count() > 2
        report = page.locator("#job-report").inner_text()
        assert "Size on disk" in report, "measured numbers are labelled"
        assert "MB" in report, "and in their units"
        for raw in ("disk_bytes", "ttft_s", "perplexity_tokens"):
            assert raw not in report, f"the raw key {raw} shows"
        page.locator("#job-output").get_by_role("link", name=name).click()
        page.wait_for_url(f"**/models/{name}/")
        lineage = page.locator("#lineage")
        assert lineage.get_by_role("link", name=DEFAULT_MODEL).is_visible(), "the parent is linked"
        assert "bf16" in lineage.inner_text()
    finally:
        store = ModelStore(REAL_MODEL_STORE)  # the e2e site shares the real-model store: leave it as found
        if store.exists(name):
            store.remove(name)
