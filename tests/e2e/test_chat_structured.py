"""The chat's Output option in a real browser on the real default model: the schema box appears with
"JSON schema", a schema that cannot be enforced is refused beside it, and a good one gives JSON that
validates against it."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page
from tests.schemas import QUESTIONS

pytestmark = pytest.mark.integration


def test_a_json_schema_answer_streams_and_validates(site: Site, browser) -> None:
    question, schema = next(iter(QUESTIONS.items()))
    page = logged_in_page(site, browser, "/chat/")
    page.get_by_text("Connected").wait_for()
    page.get_by_role("button", name="Deterministic").click()
    box = page.get_by_test_id("json-schema")
    assert box.is_hidden()
    page.locator("#id_response_format").select_option("json_schema")
    assert box.is_visible()

    page.locator("#id_json_schema").fill('{"type": "strin"}')
    page.locator("#id_content").fill(f"{question} Answer in JSON.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("document.querySelector('[data-error-for=json_schema]').textContent.length > 0")
    assert "Invalid type: strin" in page.locator('[data-error-for="json_schema"]').inner_text()

    page.locator("#id_json_schema").fill(json.dumps(schema))
    page.locator("#id_content").fill(f"{question} Answer in JSON.")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("li.msg.assistant").last
    answer.get_by_test_id("stats").wait_for(timeout=120_000)
    assert page.locator('[data-error-for="json_schema"]').inner_text() == ""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-json-schema.png"), full_page=True)
    jsonschema.validate(json.loads(answer.locator(".body").inner_text()), schema)


def test_the_next_token_page_shows_what_the_grammar_allows(site: Site, browser) -> None:
    page = logged_in_page(site, browser, "/next-token/")
    page.get_by_text("Structured output: which tokens a grammar allows").click()
    page.locator("#id_answer").fill('{"city": "')
    page.locator("#id_response_format").select_option("json_schema")
    page.locator("#id_json_schema").fill(
        json.dumps({"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}})
    )
    page.get_by_role("button", name="Show the next token").click()
    page.get_by_test_id("grammar-note").wait_for()
    tokens = page.get_by_test_id("final-bars").locator("li code").all_inner_texts()
    assert tokens
    assert all("Paris".startswith(t) or "Rome".startswith(t) for t in tokens)  # only the enum's starts
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "next-token-grammar.png"), full_page=True)
