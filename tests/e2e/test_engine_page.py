"""The Engine page in a real browser on the real default model: it follows a chat answer live, without
a reload, and /metrics refuses a stranger on the same site."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ARTIFACTS, Site, get

pytestmark = pytest.mark.integration

CARD = "[data-testid=engine][data-model='smollm2-135m-instruct']"
GENERATED = f"""() => {{
  const el = document.querySelector("{CARD} [data-testid=generated-total]");
  return el ? Number(el.textContent) : -1;
}}"""


def test_the_engine_page_follows_a_chat_answer_live(site: Site, browser) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})  # one login, two tabs
    chat = context.new_page()
    chat.goto(site.login_link())
    chat.get_by_role("button", name="Log in").click()
    chat.wait_for_url(f"{site.url}/models/")
    chat.goto(f"{site.url}/chat/")
    chat.get_by_text("Connected").wait_for()
    engine = context.new_page()
    engine.goto(f"{site.url}/engine/")
    assert engine.get_by_role("link", name="Engine").get_attribute("aria-current") == "page"
    engine.evaluate("window.__notReloaded = true")
    before = engine.evaluate(GENERATED)  # -1: no chat has started the default model's engine yet

    chat.locator("#id_max_new_tokens").fill("1000")
    chat.locator("#id_content").fill("Write a long story about a robot who learns to paint.")
    chat.get_by_role("button", name="Send").click()

    # The page polls every 2 s: the count grows at least twice while the answer streams.
    engine.wait_for_function(f"({GENERATED})() > {max(before, 0)}", timeout=120_000)
    first = engine.evaluate(GENERATED)
    card = engine.locator(CARD)
    assert "1 of 16" in card.get_by_test_id("sequences").inner_text()
    engine.wait_for_function(f"({GENERATED})() > {first}", timeout=30_000)
    assert float(card.get_by_test_id("tokens-per-s").inner_text()) > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    engine.screenshot(path=str(ARTIFACTS / "engine-live.png"), full_page=True)

    cancelled = int(card.get_by_test_id("finished").inner_text().split("cancelled ")[1].split()[0])
    chat.get_by_role("button", name="Stop").click()
    engine.wait_for_function(
        f"""() => document.querySelector("{CARD} [data-testid=finished]")
                    ?.textContent.includes("cancelled {cancelled + 1}")""",
        timeout=30_000,
    )
    assert "0 of 16" in card.get_by_test_id("sequences").inner_text()
    assert engine.evaluate("window.__notReloaded") is True  # htmx swapped the block; the page stayed

    status, headers, body = get(f"{site.url}/metrics")
    assert status == 401
    assert "playground_engine_" not in body
