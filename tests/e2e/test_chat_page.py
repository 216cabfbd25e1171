"""The chat page in a real browser, on the real default model: streaming, stats, Stop, and history."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration

RECORD_LENGTHS = """() => {
  window.__lengths = [];
  new MutationObserver(() => {
    const s = document.querySelector('[data-testid=streaming-text]');
    if (s) window.__lengths.push(s.textContent.length);
  }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
}"""
STREAMING_LENGTH = "(document.querySelector('[data-testid=streaming-text]')?.textContent.length ?? -1)"


def test_a_chat_streams_stops_and_is_kept(site: Site, browser) -> None:
    page = logged_in_page(site, browser, "/chat/")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.get_by_text("Connected").wait_for()
    page.get_by_role("button", name="Deterministic").click()
    assert page.locator("#id_temperature").input_value() == "0"
    assert page.get_by_role("button", name="Stop").is_disabled()

    # 1. A short answer streams token by token, then shows as Markdown with its stats.
    page.evaluate(RECORD_LENGTHS)
    page.locator("#id_content").fill("What is the capital of France?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(f"{STREAMING_LENGTH} > 0", timeout=120_000)
    first = page.evaluate(STREAMING_LENGTH)
    answer = page.locator("li.msg.assistant").last
    answer.get_by_test_id("stats").wait_for(timeout=120_000)
    lengths = [n for n in page.evaluate("window.__lengths") if n > 0]
    assert first > 0
    assert len(set(lengths)) >= 2, f"the bubble grew only through {sorted(set(lengths))}"
    assert lengths == sorted(lengths), "streamed text only grows"
    assert "Paris" in answer.locator(".body").inner_text()
    stats = answer.get_by_test_id("stats").inner_text()
    for shown in ["first token", "tokens/s", "37 in", "stop: stop", "smollm2-135m-instruct", "seed"]:
        assert shown in stats
    assert re.search(r"/chat/\d+/$", page.url), page.url
    conversation_url = page.url
    # Other tests on the same site may have asked the same question: this chat is the one marked current.
    page.locator("ul.conversations [aria-current=page]").get_by_text(
        "What is the capital of France?"
    ).wait_for()
    assert "of" in page.locator("#context-text").inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-answer.png"), full_page=True)

    # 2. A long answer stopped after a few tokens keeps what was written, marked stopped.
    page.locator("#id_max_new_tokens").fill("200")
    page.locator("#id_content").fill("Write a long story about a robot.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(f"{STREAMING_LENGTH} > 15", timeout=120_000)
    page.get_by_role("button", name="Stop").click()
    stopped = page.locator("li.msg.assistant").last
    stopped.locator(".badge.stopped").wait_for(timeout=60_000)
    assert page.get_by_role("button", name="Stop").is_disabled()
    assert "stop: cancelled" in stopped.get_by_test_id("stats").inner_text()
    kept = stopped.locator(".body").inner_text()
    assert len(kept) > 15
    page.screenshot(path=str(ARTIFACTS / "chat-stopped.png"), full_page=True)

    # 3. Reloading shows the whole conversation: both answers, the stopped one with its badge.
    page.reload()
    assert page.url == conversation_url
    answers = page.locator("li.msg.assistant")
    assert answers.count() == 2
    assert "Paris" in answers.first.inner_text()
    assert answers.last.locator(".badge.stopped").count() == 1
    assert answers.last.locator(".body").inner_text() == kept
    assert page.locator("li.msg.user").count() == 2
    page.screenshot(path=str(ARTIFACTS / "chat-reloaded.png"), full_page=True)

    # 4. Bad settings are refused next to their control; the context bar warns before it overflows.
    page.locator("#id_max_new_tokens").fill("8000")
    page.locator("#context-warning").get_by_text("passes 90% of the model's context").wait_for()
    page.locator("#id_content").fill("Hello")
    page.get_by_role("button", name="Send").click()
    field_error = page.locator('[data-error-for="max_new_tokens"]')
    field_error.get_by_text("less than or equal to 2048").wait_for()
    assert page.locator("li.error-note").count() == 0, "said beside its field only, not again in the chat"
    assert page.locator("#id_content").input_value() == "Hello", "a refused message goes back to the composer"
    assert page.locator("li.msg.user").count() == 2
    assert page.get_by_role("button", name="Send").is_enabled()
    page.screenshot(path=str(ARTIFACTS / "chat-errors.png"), full_page=True)

    # 5. The sidebar: rename (an htmx POST with the CSRF header), search, and delete after a confirm.
    item = page.locator("ul.conversations li").first
    item.locator("summary").click()
    item.get_by_label("New title").fill("France and robots")
    item.get_by_role("button", name="Rename").click()
    page.locator("ul.conversations a", has_text="France and robots").wait_for()
    page.locator("ul.conversations li").first.locator("summary").click()
    page.screenshot(path=str(ARTIFACTS / "chat-sidebar.png"))
    page.get_by_label("Search chats").fill("zebra")
    page.get_by_text("No chat matches “zebra”.").wait_for()
    page.get_by_label("Search chats").fill("robot")
    page.locator("ul.conversations a", has_text="France and robots").wait_for()
    page.once("dialog", lambda dialog: dialog.accept())
    item = page.locator("ul.conversations li").first
    item.locator("summary").click()
    item.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{site.url}/chat/")
    # Other tests on the same site keep their chats: this one is gone, theirs stay.
    page.locator("ul.conversations a", has_text="France and robots").wait_for(state="detached")


def test_errors_sit_beside_their_field_clear_when_fixed_and_never_cut_a_message(site: Site, browser) -> None:
    page = logged_in_page(site, browser, "/chat/")
    page.get_by_text("Connected").wait_for()
    content_error = page.locator('[data-error-for="content"]')
    send = page.get_by_role("button", name="Send")

    # An empty message: said beside the message box, no banner; typing clears it.
    page.locator("#id_content").fill("   ")
    send.click()
    assert content_error.inner_text() == "Type a message."
    assert page.locator("li.error-note").count() == 0
    page.locator("#id_content").fill("Hello")
    assert content_error.inner_text() == ""

    # 17,000 characters (over the 16,000 limit) are kept whole in the box, refused with the limit, and
    # Send waits until the message is short enough.
    page.locator("#id_content").fill("x" * 17_000)
    assert len(page.locator("#id_content").input_value()) == 17_000
    assert (
        content_error.inner_text() == "Message is longer than 16,000 characters (it has 17,000): shorten it."
    )
    assert send.is_disabled()
    page.screenshot(path=str(ARTIFACTS / "chat-too-long.png"), full_page=True)
    page.locator("#id_content").fill("x" * 16_000)
    assert content_error.inner_text() == ""
    assert send.is_enabled()

    # A setting the server refuses: its message sits beside that setting, and the next send clears it.
    page.locator("#id_top_p").fill("7")
    page.locator("#id_content").fill("Hi")
    send.click()
    top_p_error = page.locator('[data-error-for="top_p"]')
    top_p_error.wait_for(state="visible", timeout=30_000)
    page.wait_for_function("document.querySelector('[data-error-for=top_p]').textContent.length > 0")
    assert "1" in top_p_error.inner_text()
    assert page.locator("li.error-note").count() == 0
    page.locator("#id_top_p").fill("1")
    page.locator("#id_content").fill("   ")
    send.click()
    assert top_p_error.inner_text() == ""
    assert content_error.inner_text() == "Type a message."
