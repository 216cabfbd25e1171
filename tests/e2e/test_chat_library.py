"""The prompt library and saved presets in a real browser, on the real default model: use the few-shot
template, save a preset (htmx), apply it, answer best-of-2 with the other candidate shown."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration


def test_the_few_shot_template_and_a_saved_preset_in_the_chat(site: Site, browser) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = logged_in_page(site, browser, "/chat/")
    page.get_by_role("link", name="Prompt library").click()
    page.wait_for_url(f"{site.url}/chat/prompts/")
    for name in ["Zero-shot", "Few-shot", "Chain-of-thought", "Natural language inference", "Extraction"]:
        assert page.get_by_role("heading", name=name, exact=True).count() == 1
    page.screenshot(path=str(ARTIFACTS / "chat-library.png"), full_page=True)

    # 1. "Use" opens a new chat with the examples written into the message and the system prompt set.
    page.get_by_role("link", name="Use Few-shot").click()
    page.wait_for_url(f"{site.url}/chat/?prompt=builtin%3Afew-shot")
    page.get_by_text("Connected").wait_for()
    composer = page.locator("#id_content")
    text = composer.input_value()
    assert text.startswith("Label the sentiment of each input as positive or negative.")
    assert "Input: The soup was cold and the waiter ignored us.\nOutput: negative" in text
    assert text.endswith("Input: {text}\nOutput:")
    assert page.locator("#id_system").input_value() == "Reply with one word: positive or negative."
    assert "{text}" in page.get_by_test_id("prompt-used").inner_text()
    # Sent with {text} still in it: a warning beside the message first, nothing sent.
    page.get_by_role("button", name="Send").click()
    warning = page.locator('[data-error-for="content"]')
    assert warning.inner_text() == "Replace {text} first, or press Send again to send the message as it is."
    assert page.locator("li.msg.user").count() == 0
    composer.fill(text.replace("{text}", "I really enjoyed this book, it was wonderful."))
    assert warning.inner_text() == ""
    page.get_by_role("button", name="Deterministic").click()
    page.locator("#id_max_new_tokens").fill("8")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("li.msg.assistant").last
    answer.get_by_test_id("stats").wait_for(timeout=120_000)
    assert "Output: positive" in page.locator("li.msg.user").last.inner_text()
    # A 135M model is no reliable classifier: the answer is checked for arriving, not for its label.
    assert answer.locator(".body").inner_text().strip()
    assert "stop:" in answer.get_by_test_id("stats").inner_text()

    # 2. Save the sampler settings as a preset: the button appears next to the built-ins.
    page.locator("#id_temperature").fill("0.25")
    page.locator("#id_top_k").fill("7")
    page.locator("#id_best_of").fill("2")
    page.locator("#id_max_new_tokens").fill("12")
    page.get_by_label("Preset name").fill("Sharp pair")
    page.get_by_role("button", name="Save as preset").click()
    page.get_by_text("Saved the preset “Sharp pair”.").wait_for()
    mine = page.get_by_role("button", name="Sharp pair", exact=True)
    # A duplicate name is refused in place.
    page.get_by_label("Preset name").fill("Sharp pair")
    page.get_by_role("button", name="Save as preset").click()
    page.get_by_role("alert").filter(has_text="You already have a preset named “Sharp pair”").wait_for()

    # 3. Another preset changes the settings; mine puts them back.
    page.get_by_role("button", name="Balanced").click()
    assert page.locator("#id_temperature").input_value() == "0.7"
    mine.click()
    assert page.locator("#id_temperature").input_value() == "0.25"
    assert page.locator("#id_top_k").input_value() == "7"
    assert page.locator("#id_best_of").input_value() == "2"
    assert mine.get_attribute("aria-pressed") == "true"

    # 4. Best of 2: the answer shows the other candidate, folded.
    composer.fill("Name a colour.")
    answers_before = page.locator("li.msg.assistant").count()
    page.get_by_role("button", name="Send").click()
    answer = page.locator("li.msg.assistant").nth(answers_before)  # not .last: the previous one has stats
    answer.get_by_test_id("stats").wait_for(timeout=120_000)
    assert "best of 2" in answer.get_by_test_id("stats").inner_text()
    candidates = answer.get_by_test_id("candidates")
    candidates.get_by_text("Other candidates (1)").click()
    assert "mean log-prob" in candidates.inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-preset-best-of.png"), full_page=True)

    # 5. The preset is kept across pages and can be deleted.
    page.goto(f"{site.url}/chat/")
    page.get_by_role("button", name="Sharp pair", exact=True).wait_for()
    page.get_by_role("button", name="Delete the preset Sharp pair").click()
    page.get_by_role("button", name="Sharp pair", exact=True).wait_for(state="detached")
