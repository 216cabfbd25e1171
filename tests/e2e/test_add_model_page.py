"""A model pulled from Models > Add a model in a real browser: the job page follows the pull's stages on a
progress bar, the model then stands in the catalog list, and Remove… takes it out again after asking.

The smallest pullable model (minilm, an 84 MB encoder) is pulled from the tests' shared download cache
(downloaded the first time only). The site serves the real-model store that other tests use, so the
store is left as the test found it."""

from __future__ import annotations

import re

import pytest

from llmcore.pulls import PULLABLE, pull
from llmcore.store import ModelStore
from tests.conftest import DOWNLOAD_CACHE, REAL_MODEL_STORE
from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration
SMALLEST = min(PULLABLE.values(), key=lambda spec: spec.download_bytes).name
FINISHED = "['succeeded', 'failed', 'cancelled'].includes(document.querySelector('#job-status')?.textContent)"
BAR = "[document.querySelector('#job-status')?.textContent, document.querySelector('#job-progress')?.value]"


def test_a_model_pulled_from_the_add_page_shows_its_progress_and_joins_the_list(site: Site, browser) -> None:
    store = ModelStore(REAL_MODEL_STORE)
    had = store.exists(SMALLEST)
    if had:
        store.remove(SMALLEST)  # pulled again below (from the cache), and left there at the end
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = logged_in_page(site, browser, "/models/")
    try:
        page.locator("#add-model").click()
        page.wait_for_url("**/models/add/")
        row = page.locator(f'tr[data-model="{SMALLEST}"]')
        facts = row.inner_text()
        assert "Apache-2.0" in facts, facts
        assert "79.6 MB" in facts, "the download's size, in human units"
        page.screenshot(path=str(ARTIFACTS / "models-add.png"), full_page=True)
        row.get_by_role("button", name=f"Pull {SMALLEST}").click()
        page.wait_for_url(re.compile(r"/jobs/\d+/$"))
        assert page.locator("#job-progress").is_visible(), "the job page shows a progress bar at once"
        seen = [page.evaluate(BAR)]
        while not page.evaluate(FINISHED):  # the bar as the page's own polling updates it
            page.wait_for_timeout(250)
            seen.append(page.evaluate(BAR))
            assert len(seen) < 1200, f"the pull did not finish in 5 minutes: {seen[-1]}"
        page.screenshot(path=str(ARTIFACTS / "models-pull-job.png"), full_page=True)
        live = page.locator("#job-live").inner_text()
        assert page.locator("#job-status").text_content() == "succeeded", live
        values = [value for _, value in seen if value is not None]
        assert values == sorted(values), f"the bar never goes back: {seen}"
        assert values[-1] == 100
        assert "stages done" in live
        assert f"Extracting {PULLABLE[SMALLEST].file_name}" in page.locator("#job-log").inner_text()

        page.locator("#job-output").get_by_role("link", name=SMALLEST).click()
        page.wait_for_url(f"**/models/{SMALLEST}/")
        page.goto(f"{site.url}/models/")
        assert page.locator(f'a[href="/models/{SMALLEST}/"]').first.is_visible(), "it is in the list"
        page.screenshot(path=str(ARTIFACTS / "models-list-after-pull.png"), full_page=True)

        page.goto(f"{site.url}/models/{SMALLEST}/")
        page.get_by_role("link", name="Remove…").click()
        page.wait_for_url(f"**/models/{SMALLEST}/remove/")
        assert "None of your chats uses it." in page.locator("#remove").inner_text()
        page.get_by_role("button", name=f"Remove {SMALLEST}").click()
        page.wait_for_url(f"{site.url}/models/")
        assert f"Removed {SMALLEST}" in page.locator("main").inner_text()
        assert page.locator(f'a[href="/models/{SMALLEST}/"]').count() == 0
        assert not store.exists(SMALLEST)
    finally:
        if had and not store.exists(SMALLEST):
            pull(SMALLEST, store, DOWNLOAD_CACHE)
        elif not had and store.exists(SMALLEST):
            store.remove(SMALLEST)
