"""The next-token explorer and the logit lens in a real browser, on the real default model."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration


def test_moving_the_temperature_slider_changes_the_bars(site: Site, browser) -> None:
    page = logged_in_page(site, browser, "/next-token/")
    bars = page.get_by_test_id("final-bars").locator("li .num")
    before = bars.first.inner_text()
    assert "Paris" in page.get_by_test_id("final-bars").locator("li code").first.inner_text()
    page.locator("#id_temperature").fill("0.3")
    page.wait_for_function(
        "before => document.querySelector('[data-testid=final-bars] li .num').textContent.trim() !== before",
        arg=before,
    )
    after = bars.first.inner_text()
    assert float(after) > float(before), "a colder temperature makes the top token more likely"
    assert page.locator('output[for="id_temperature"]').inner_text() == "0.3"
    # Top-p cuts the tail: the note and the stage table say how many tokens are left.
    page.locator("#id_top_p").fill("0.5")
    page.get_by_text("Top-p = 0.5 keeps the").wait_for()
    page.get_by_label("Seed").fill("7")
    page.get_by_role("button", name="Sample").click()
    page.get_by_test_id("sample").wait_for()
    assert "with seed 7" in page.get_by_test_id("sample").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "next-token.png"), full_page=True)


def test_the_logit_lens_shows_the_answer_emerging(site: Site, browser) -> None:
    page = logged_in_page(site, browser, "/logit-lens/")
    page.get_by_test_id("lens-idle").wait_for()  # the page opens without running the lens
    running = page.get_by_test_id("lens-running")
    assert running.is_hidden()
    page.get_by_role("button", name="Run the lens").click()
    grid = page.get_by_test_id("lens")
    grid.wait_for()
    assert running.is_hidden()
    output_row = grid.locator("tbody tr").first
    assert "layer 30 (output)" in output_row.inner_text()
    assert "Paris" in output_row.locator("td").last.inner_text()
    assert grid.locator("td.settles").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "logit-lens.png"), full_page=True)

    # A new prompt: while it runs (held back here for a second) the button is disabled, the notice shows
    # and the old table is dimmed, so it never looks like the answer to the new prompt.
    def slow(route) -> None:  # type: ignore[no-untyped-def]
        page.wait_for_timeout(1000)
        route.continue_()

    page.route("**/logit-lens/", slow)
    page.locator("#id_text").fill("The capital of Italy is")
    page.get_by_role("button", name="Run the lens").click()
    running.wait_for(state="visible")
    assert page.get_by_role("button", name="Run the lens").is_disabled()
    page.wait_for_function("getComputedStyle(document.getElementById('result')).opacity < 0.5")
    page.screenshot(path=str(ARTIFACTS / "logit-lens-running.png"), full_page=True)
    page.wait_for_function("!document.getElementById('lens-area').classList.contains('htmx-request')")
    assert running.is_hidden()
    assert "Italy" in grid.locator("thead").inner_text()
    page.unroute_all(behavior="ignoreErrors")


def test_a_bad_setting_is_named_beside_it_keeps_the_last_result_and_clears_when_fixed(
    site: Site, browser
) -> None:
    page = logged_in_page(site, browser, "/next-token/")
    bars = page.get_by_test_id("final-bars")
    bars.wait_for()
    page.get_by_label("Seed").fill("-3")
    page.get_by_role("button", name="Sample").click()
    seed_error = page.locator("#error-seed")
    seed_error.wait_for(state="visible")
    assert "greater than or equal to 0" in seed_error.inner_text()
    assert bars.is_visible(), "the last result stays"
    stale = page.locator("#stale")
    assert "still the one for the last settings that were valid" in stale.inner_text()
    page.screenshot(path=str(ARTIFACTS / "next-token-bad-seed.png"), full_page=True)
    page.get_by_label("Seed").fill("5")
    page.get_by_role("button", name="Sample").click()
    page.get_by_test_id("sample").wait_for()
    assert seed_error.inner_text() == ""
    assert stale.is_hidden()
