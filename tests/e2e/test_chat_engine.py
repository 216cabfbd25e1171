"""The engine as a chat user sees it, in a real browser on the real model: the model loading before a
first answer, waiting in line when the engine is full, and speculative decoding chosen in the sampler
panel and reported under the answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import stop_process
from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page, start_site
from tests.e2e.test_chat_page import STREAMING_LENGTH

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def one_seat(real_model_store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A site whose engine decodes one sequence at a time: the second chat has to wait. It does not
    preload the default model, so the first chat shows the model loading."""
    running = start_site(
        tmp_path_factory.mktemp("one-seat"), ENGINE_MAX_SEQUENCES="1", PRELOAD_DEFAULT_MODEL="0"
    )
    yield running
    stop_process(running.process)


def test_a_second_chat_waits_in_line_then_answers(one_seat: Site, browser) -> None:
    first = logged_in_page(one_seat, browser, "/chat/")
    second = logged_in_page(one_seat, browser, "/chat/")
    for page in (first, second):
        page.get_by_text("Connected").wait_for()
        page.get_by_role("button", name="Deterministic").click()
    first.locator("#id_max_new_tokens").fill("400")
    first.locator("#id_content").fill("Write a long story about a robot.")
    first.get_by_role("button", name="Send").click()
    # nothing loaded yet: the chat says what it waits for before the first token, then streams
    loading = first.get_by_test_id("loading")
    loading.wait_for(timeout=30_000)
    assert (
        loading.inner_text() == "Loading smollm2-135m-instruct (its first answer waits a few seconds for it)…"
    )
    first.wait_for_function(f"{STREAMING_LENGTH} > 10", timeout=120_000)
    assert first.get_by_test_id("loading").count() == 0

    second.locator("#id_max_new_tokens").fill("8")
    second.locator("#id_content").fill("Say hello.")
    second.get_by_role("button", name="Send").click()
    note = second.get_by_test_id("queued")
    note.wait_for(timeout=60_000)
    assert "Waiting" in note.inner_text()
    assert "(1 answer running)" in note.inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    second.screenshot(path=str(ARTIFACTS / "chat-waiting.png"), full_page=True)

    first.get_by_role("button", name="Stop").click()  # the seat frees up: the second answer starts
    answer = second.locator("li.msg.assistant").last
    answer.get_by_test_id("stats").wait_for(timeout=120_000)
    assert second.get_by_test_id("queued").count() == 0
    assert "waited" in answer.get_by_test_id("stats").inner_text()


def test_speculative_decoding_is_chosen_in_the_panel_and_reported(site: Site, browser) -> None:
    page = logged_in_page(site, browser, "/chat/")
    page.get_by_text("Connected").wait_for()
    page.get_by_role("button", name="Deterministic").click()
    page.locator("#id_speculative").select_option("prompt_lookup")
    page.locator("#id_max_new_tokens").fill("60")
    page.locator("#id_content").fill(
        "Repeat this sentence exactly, twice: the quick brown fox jumps over the lazy dog by the river."
    )
    page.get_by_role("button", name="Send").click()
    answer = page.locator("li.msg.assistant").last
    answer.get_by_test_id("stats").wait_for(timeout=120_000)
    shown = answer.get_by_test_id("speculative").inner_text()
    assert shown.startswith("speculative ")
    assert "kept" in shown
    kept, proposed = shown.split()[1].split("/")
    assert int(proposed) > 0
    assert 0 <= int(kept) <= int(proposed)
    page.screenshot(path=str(ARTIFACTS / "chat-speculative.png"), full_page=True)
