"""A remote model end to end, in a real browser: a second site (its own Daphne process and database) whose
admin adds the session's site as an OpenAI-compatible server on Add a model, then chats with the real
default model through it and reads the answer's tokens in the inspector, which says what it cannot show."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.conftest import manage, stop_process
from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page, start_site
from tests.e2e.test_openai_api import MAKE_KEY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def front(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The site a user opens: it may reach 127.0.0.1, where the session's site serves /v1."""
    running = start_site(
        tmp_path_factory.mktemp("front"), REMOTE_MODEL_HOSTS="127.0.0.1", PRELOAD_DEFAULT_MODEL="0"
    )
    yield running
    stop_process(running.process)


def test_an_admin_adds_another_site_and_chats_with_its_model(site: Site, front: Site, browser) -> None:
    secret = manage(site.env, "shell", "-c", MAKE_KEY).strip().splitlines()[-1]
    page = logged_in_page(front, browser, "/models/add/")
    form = page.locator("#remote-form")
    form.get_by_label("Base URL").fill(f"{site.url}/v1")
    form.get_by_label("The server's model id").fill(DEFAULT_MODEL)
    form.get_by_label("API key").fill(secret)
    form.get_by_label("Name in the catalog").fill("far-smollm")
    form.get_by_role("button", name="Add").click()
    page.wait_for_url(f"{front.url}/models/far-smollm/")
    assert page.locator("[data-kind='remote']").first.inner_text() == "remote"
    assert page.locator("[data-fact='context']").inner_text() == "8192 tokens"  # the other site's report
    assert secret not in page.content()

    page.locator("#tools").get_by_role("link", name="Chat").click()
    page.get_by_text("Connected").wait_for()
    assert page.locator("#id_model").input_value() == "far-smollm"
    page.get_by_role("button", name="Deterministic").click()
    page.locator("#id_content").fill("What is the capital of France?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("li.msg.assistant").last
    answer.get_by_test_id("stats").wait_for(timeout=120_000)
    assert "Paris" in answer.locator(".body").inner_text()
    assert "served by 127.0.0.1" in answer.get_by_test_id("remote").inner_text()
    assert answer.get_by_test_id("batch").count() == 0  # how the other server batched it is not known
    # the prompt's tokens, counted by the other server, are in the context meter once the answer is done
    used = int(page.locator("#context-text").inner_text().split(" of ")[0])
    assert used > 30

    answer.get_by_role("button", name="Tokens").click()
    chips = answer.locator(".token-chips .tok")
    chips.first.wait_for()
    assert "Paris" in "".join(chips.all_inner_texts()).replace("·", " ")
    chips.filter(has_text="Paris").first.click()
    panel = page.locator("#token-inspector")
    prob = panel.get_by_test_id("token-prob")
    prob.wait_for(timeout=30_000)
    assert re.fullmatch(r"\d+(\.\d+)?%", prob.inner_text())  # the other site returned logprobs
    alternatives = panel.locator(".ti-alt-list li")
    assert alternatives.count() >= 5
    assert alternatives.first.locator(".ti-value").inner_text().endswith("(chosen)")
    assert all(button.is_disabled() for button in panel.get_by_role("button", name="Branch from here").all())
    assert "served by 127.0.0.1" in panel.inner_text()
    panel.get_by_text("its attention is computed on 127.0.0.1").wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-remote-model.png"), full_page=True)
