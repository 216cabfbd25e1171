"""Versions of a chat in a real browser, on the real default model: regenerate, switch between the two
answers with ‹ ›, edit a question and rerun it, and continue a stopped answer."""

from __future__ import annotations

import pytest

from tests.conftest import manage
from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page
from tests.e2e.test_chat_page import STREAMING_LENGTH

pytestmark = pytest.mark.integration
SLOW = 180_000  # ms: a shared CPU runs the model
CLEANUP = "Conversation.objects.filter(title__startswith='Describe the sea').delete()"


def raw_text(message) -> str:
    """The message as written (what Copy and Edit use), not its Markdown rendering."""
    return message.locator(".msg-actions").get_attribute("data-content")


@pytest.fixture
def own_chats(site: Site):
    """The chats this test starts are deleted afterwards: other tests on the same site count chats."""
    yield
    manage(site.env, "shell", "-c", f"from playground.chat.models import Conversation; {CLEANUP}")


def test_versions_of_answers_and_questions(site: Site, browser, own_chats) -> None:
    page = logged_in_page(site, browser, "/chat/")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.get_by_text("Connected").wait_for()
    page.get_by_role("button", name="Creative").click()  # sampling: a fresh seed gives another answer
    page.locator("#id_max_new_tokens").fill("24")
    answers = page.locator("li.msg.assistant")

    # 1. An answer, then Regenerate: a second version of it, shown as 2/2.
    page.locator("#id_content").fill("Describe the sea in one sentence.")
    page.get_by_role("button", name="Send").click()
    answers.last.get_by_test_id("stats").wait_for(timeout=SLOW)
    # the default model's 4-bit layers ran packed; the stats line says so
    assert answers.last.get_by_test_id("decode").inner_text() == "4-bit packed"
    first = raw_text(answers.last)
    assert first
    answers.last.get_by_role("button", name="Regenerate").click()
    answers.last.locator(".version-count", has_text="2/2").wait_for(timeout=SLOW)
    assert answers.count() == 1  # one branch shown: the new version replaces the old in place
    second = raw_text(answers.last)
    assert second != first
    page.screenshot(path=str(ARTIFACTS / "chat-regenerated.png"), full_page=True)

    # 2. ‹ and › switch between the two versions.
    answers.last.get_by_role("button", name="Previous version").click()
    answers.last.locator(".version-count", has_text="1/2").wait_for()
    assert raw_text(answers.last) == first
    answers.last.get_by_role("button", name="Next version").click()
    answers.last.locator(".version-count", has_text="2/2").wait_for()
    assert raw_text(answers.last) == second

    # 3. Edit the question: a second version of it, answered; the first stays one click away.
    question = page.locator("li.msg.user").last
    question.get_by_role("button", name="Edit").click()
    editor = question.locator("form.editor textarea")
    assert editor.input_value() == "Describe the sea in one sentence."
    editor.fill("Describe the moon in one sentence.")
    question.get_by_role("button", name="Save & rerun").click()
    edited = page.locator("li.msg.user").last
    edited.locator(".version-count", has_text="2/2").wait_for(timeout=SLOW)
    answers.last.get_by_test_id("stats").wait_for(timeout=SLOW)
    assert raw_text(edited) == "Describe the moon in one sentence."
    assert raw_text(answers.last) not in (first, second)
    # the first question's answer stays with it, and the page says how to get back to it
    note = edited.get_by_test_id("version-note")
    assert note.inner_text() == "version 1 goes on for 1 more message: switch with ‹ › to get back to it"
    page.screenshot(path=str(ARTIFACTS / "chat-edited.png"), full_page=True)
    edited.get_by_role("button", name="Previous version").click()
    page.locator("li.msg.user .version-count", has_text="1/2").wait_for()
    assert raw_text(page.locator("li.msg.user").last) == "Describe the sea in one sentence."
    assert raw_text(answers.last) == second  # that branch kept its newest answer
    page.locator("li.msg.user").last.get_by_role("button", name="Next version").click()
    page.locator("li.msg.user .version-count", has_text="2/2").wait_for()

    # 4. A long answer stopped early, then Continue: a new version that writes on from the same text.
    page.get_by_role("button", name="Deterministic").click()
    page.locator("#id_max_new_tokens").fill("200")
    page.locator("#id_content").fill("Write a long story about a robot.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(f"{STREAMING_LENGTH} > 15", timeout=SLOW)
    page.get_by_role("button", name="Stop").click()
    answers.last.locator(".badge.stopped").wait_for(timeout=SLOW)
    kept = raw_text(answers.last)
    page.locator("#id_max_new_tokens").fill("16")
    answers.last.get_by_role("button", name="Continue").click()
    answers.last.locator(".version-count", has_text="2/2").wait_for(timeout=SLOW)
    continued = raw_text(answers.last)
    assert continued.startswith(kept)
    assert len(continued) > len(kept)
    assert answers.last.locator(".badge.stopped").count() == 0
    assert "stop: length" in answers.last.get_by_test_id("stats").inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-continued.png"), full_page=True)

    # 5. Reloading shows the same branch, with its versions.
    page.reload()
    assert raw_text(page.locator("li.msg.assistant").last) == continued
    assert page.locator("li.msg.user .version-count", has_text="2/2").count() == 1

    # 6. Deleting the continued version (after a confirm) shows the stopped one it came from.
    page.once("dialog", lambda dialog: dialog.accept())
    answers.last.get_by_role("button", name="Delete").click()
    answers.last.locator(".badge.stopped").wait_for()
    assert raw_text(answers.last) == kept
    assert answers.last.locator(".version-count").count() == 0
