"""End to end: a real browser runs the attention explorer on the real default model."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration
SENTENCE = "The animal didn't cross the street because it was too tired."
# The share of a canvas's pixels that are not the white background; a drawn map has plenty.
INK = """(sel) => {
  const c = document.querySelector(sel);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 245 || d[i + 1] < 245 || d[i + 2] < 245) ink++;
  return ink / (d.length / 4);
}"""


# Notes when htmx got the run's answer and when a panel first marked itself drawn (data-ready).
WATCH_FIRST_VIEW = """() => {
  document.body.addEventListener('htmx:afterRequest', () => { window.answeredAt = performance.now(); });
  window.firstViewAt = null;
  new MutationObserver(() => {
    if (document.querySelector('[data-ready]') && !window.firstViewAt) window.firstViewAt = performance.now();
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['data-ready']});
}"""


def open_page(site: Site, browser):
    return logged_in_page(site, browser, "/attention/")


def run(page, text: str) -> None:
    page.get_by_label("Text").fill(text)
    page.get_by_role("button", name="Show attention").click()
    page.wait_for_selector(
        "[data-attention-panel][data-ready=head], #attention-results .message.error", timeout=240_000
    )
    errors = page.locator("#attention-results .message.error:visible").all_inner_texts()
    assert errors == []


def test_a_sentence_draws_the_model_view_and_a_head_shows_weights_on_hover(site: Site, browser) -> None:
    page = open_page(site, browser)
    run(page, SENTENCE)
    panel = page.locator("[data-attention-panel]")
    assert panel.locator('[data-fact="layers"]').inner_text() == "30"
    assert panel.locator('[data-fact="kv_heads"]').inner_text() == "3"
    assert page.evaluate(INK, "[data-role=model-view]") > 0.2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "attention-model.png"), full_page=True)

    # Open layer 3, head 4 by clicking its cell in the model view.
    box = page.evaluate(
        """() => { const p = window.attentionExplorer.panels[0], l = p.modelLayoutCache;
                   return {x: l.left + 3 * (l.cell + l.gap) + l.cell / 2, y: l.rowY(4) + l.cell / 2}; }"""
    )
    page.locator("[data-role=model-view]").click(position=box)
    title = panel.locator("[data-role=title]")
    title.filter(has_text="Layer 3 · head 4").wait_for()
    assert "reads key/value head 1, shared with heads 3, 4, 5" in title.inner_text()
    assert page.evaluate(INK, "[data-role=detail]") > 0.1

    # Hover a cell below the diagonal: the weight and both tokens; above it: the mask.
    cell = page.evaluate(
        """() => { const l = window.attentionExplorer.panels[0].heatLayoutCache;
                   const at = (i, j) => ({x: l.left + (j + 0.5) * l.cell, y: l.top + (i + 0.5) * l.cell});
                   return {below: at(5, 2), above: at(2, 5)}; }"""
    )
    detail = page.locator("[data-role=detail]")
    tooltip = panel.locator("[data-role=tooltip]")
    detail.hover(position=cell["below"])
    assert re.search(r"looks at .*\n?weight \d\.\d{3}", tooltip.inner_text())
    page.screenshot(path=str(ARTIFACTS / "attention-head.png"), full_page=True)
    detail.hover(position=cell["above"])
    assert "masked" in tooltip.inner_text()

    # Clicking a token label highlights it; the line view draws lines for the same head.
    detail.click(position={"x": 8, "y": cell["below"]["y"]})
    assert page.evaluate("() => window.attentionExplorer.panels[0].token") == 5
    page.get_by_role("button", name="Line view").click()
    assert page.evaluate(INK, "[data-role=detail]") > 0.01
    page.locator("[data-role=head]").select_option("mean")
    title.filter(has_text="Layer 3 · mean of all 9 heads").wait_for()
    page.screenshot(path=str(ARTIFACTS / "attention-lines.png"), full_page=True)

    # When the server no longer keeps the capture, the page says so and runs the text again on request.
    page.evaluate(
        """() => { const m = window.attentionExplorer.panels[0].meta;
                   m.head_url = m.head_url.replace(m.capture_id, 'evicted-capture'); }"""
    )
    page.locator("[data-role=head]").select_option("7")
    gone = panel.locator("[data-role=gone]")
    gone.wait_for()
    assert "no longer kept on the server" in gone.inner_text()
    page.screenshot(path=str(ARTIFACTS / "attention-gone.png"))
    old_id = page.evaluate("() => window.attentionExplorer.panels[0].meta.capture_id")
    gone.get_by_role("button", name="Run again").click()
    page.wait_for_function(
        """(old) => { const p = document.querySelector('[data-attention-panel][data-ready=head]');
                      return p && JSON.parse(p.querySelector('script').textContent).capture_id !== old; }""",
        arg=old_id,
        timeout=240_000,
    )
    assert panel.locator("[data-role=gone]").is_hidden()


def test_a_long_input_draws_its_first_view_from_a_small_download(site: Site, browser) -> None:
    page = open_page(site, browser)
    # 86 sentences are 1023 tokens for the default model: just under the 1024-token limit.
    text = " ".join(f"Sentence {i} tells the model one more small thing." for i in range(86))
    received: list[int] = []
    page.on("response", lambda r: received.append(int(r.headers.get("content-length") or 0)))
    page.evaluate(WATCH_FIRST_VIEW)
    received.clear()
    run(page, text)
    meta = json.loads(page.locator("script[id^=attention-meta]").first.inner_text())
    assert meta["num_tokens"] == 1023
    assert meta["overview"]["shape"] == [30, 9, 64, 64]
    assert page.evaluate(INK, "[data-role=model-view]") > 0.2
    timing = page.evaluate("() => ({answered: window.answeredAt, firstView: window.firstViewAt})")
    page.screenshot(path=str(ARTIFACTS / "attention-long.png"), full_page=True)
    ARTIFACTS.joinpath("attention-long.json").write_text(
        json.dumps(
            {
                "tokens": meta["num_tokens"],
                "forward_seconds": meta["forward_seconds"],
                "first_view_ms_after_response": round(timing["firstView"] - timing["answered"]),
                "bytes_received": sum(received),
            }
        )
    )
    # The page, its meta and the overview: far below the 10 MB budget (a head is fetched after).
    assert sum(received) < 10_000_000


def test_an_encoder_side_by_side_shows_bidirectional_attention(site: Site, browser, minilm_store) -> None:
    # minilm_store pulls the encoder into the store the site serves; the page lists it on load.
    page = open_page(site, browser)
    options = page.locator("select[name=compare] option").all_inner_texts()
    assert any(o.startswith("minilm ") for o in options), options
    page.locator("select[name=compare]").select_option("minilm")
    page.get_by_label("Text").fill(SENTENCE)
    page.get_by_role("button", name="Show attention").click()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-attention-panel][data-ready=head]').length === 2",
        timeout=240_000,
    )
    assert page.locator(".badge-bi").count() == 1
    page.screenshot(path=str(ARTIFACTS / "attention-compare.png"), full_page=True)
