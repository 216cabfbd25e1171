"""The chat token inspector in a real browser, on the real default model: a deterministic answer shown token
by token, one token's probability, alternatives and attention grid (30 layers x 9 heads), keyboard use,
Escape, and branching the answer from an alternative."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration
PROMPT_TOKENS = 37  # "What is the capital of France?" in the default model's chat template


def test_a_token_of_an_answer_opens_the_inspector(site: Site, browser) -> None:
    page = logged_in_page(site, browser, "/chat/")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.get_by_text("Connected").wait_for()
    page.get_by_role("button", name="Deterministic").click()
    page.locator("#id_content").fill("What is the capital of France?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("li.msg.assistant").last
    answer.get_by_test_id("stats").wait_for(timeout=120_000)
    answer_id = answer.get_attribute("id")
    assert answer_id
    assert re.fullmatch(r"message-\d+", answer_id)

    # The answer, token by token: the chips spell the answer (spaces drawn as ·).
    toggle = answer.get_by_role("button", name="Tokens")
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    chips = answer.locator(".token-chips .tok")
    chips.first.wait_for()
    count = chips.count()
    assert count >= 3
    spelled = "".join(chips.all_inner_texts()).replace("·", " ")
    assert "Paris" in spelled

    # The token "Paris": its probability, the alternatives after the sampler, the attention grid.
    chip = chips.filter(has_text="Paris").first
    index = int(chip.get_attribute("data-index") or -1)
    chip.click()
    panel = page.locator("#token-inspector")
    prob = panel.get_by_test_id("token-prob")
    prob.wait_for(timeout=60_000)
    assert re.fullmatch(r"\d+(\.\d+)?%", prob.inner_text())
    assert "Paris" in panel.locator(".ti-token .ti-label").inner_text()
    panel.get_by_text("Greedy decoding (temperature 0) always takes the likeliest token").wait_for()
    alternatives = panel.locator(".ti-alt-list li")
    assert alternatives.count() == 5
    assert alternatives.first.locator(".ti-value").inner_text().endswith("(chosen)")  # greedy: the top one
    grid = panel.locator("canvas.ti-grid")
    assert (grid.get_attribute("data-layers"), grid.get_attribute("data-heads")) == ("30", "9")
    assert "30 layers × 9 heads (3 key/value heads)" in panel.get_by_test_id("grid-caption").inner_text()
    context = panel.locator(".ti-context .ctx")
    assert context.count() == PROMPT_TOKENS + index
    assert panel.locator(".ti-context .ctx.generated").count() == index
    shading = context.evaluate_all("spans => spans.map(s => Number(s.style.getPropertyValue('--w')))")
    assert max(shading) > 0.2
    assert min(shading) < max(shading)
    assert panel.locator(".ti-selected").inner_text().startswith("Layer 29, head 0:")
    page.screenshot(path=str(ARTIFACTS / "chat-inspector.png"), full_page=True)

    # Keyboard: the grid takes arrow keys, and the selected head's shading follows.
    grid.focus()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowRight")
    assert panel.locator(".ti-selected").inner_text().startswith("Layer 28, head 1:")
    assert context.evaluate_all("spans => spans.map(s => Number(s.style.getPropertyValue('--w')))") != shading

    # Escape closes the panel and gives focus back to the token.
    page.keyboard.press("Escape")
    assert panel.is_hidden()
    assert chip.evaluate("node => node === document.activeElement")

    # "Branch from here" on the second alternative writes a new version of the answer that takes it there.
    original = chips.all_inner_texts()
    prefix = "".join(original[:index]).replace("·", " ")
    chip.click()
    panel.get_by_test_id("token-prob").wait_for(timeout=60_000)
    other = panel.locator(".ti-alt-list li").nth(1)
    taken = other.locator(".ti-label").inner_text().replace("·", " ")
    other.get_by_role("button", name="Branch from here").click()
    assert panel.is_hidden()
    newer = page.locator(f"li.msg.assistant:not(#{answer_id})").last
    newer.get_by_test_id("stats").wait_for(timeout=120_000)
    assert newer.get_attribute("id") != answer_id
    assert newer.locator(".body").inner_text().startswith((prefix + taken).strip())
    assert "2/2" in newer.get_by_test_id("versions").inner_text()  # the answer has two versions now
    # The new version's tokens: the same start, then the alternative taken at the branch point.
    newer.get_by_role("button", name="Tokens").click()
    branched = newer.locator(".token-chips .tok")
    branched.first.wait_for()
    assert branched.all_inner_texts()[:index] == original[:index]
    assert branched.nth(index).inner_text().replace("·", " ") == taken
    page.screenshot(path=str(ARTIFACTS / "chat-inspector-branch.png"), full_page=True)
