"""The next-token explorer's grammar stage: with a response format, the stage table shows which tokens a
grammar allows after the answer so far, before every other stage, and a draw takes one of them."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from llmcore.loading import load_model
from llmcore.store import ModelStore
from playground.core.services import model_cache

pytestmark = pytest.mark.django_db
COLOUR = {"type": "object", "properties": {"colour": {"enum": ["red", "green"]}}, "required": ["colour"]}


@pytest.fixture(autouse=True)
def fresh_cache():
    yield
    model_cache().clear()


def api(client: Client, **body) -> tuple[int, dict]:
    body = {"model": "tiny-llama", "text": "Answer in JSON:", **body}
    response = client.post(
        reverse("inspect:next-token-api"), json.dumps(body), content_type="application/json"
    )
    return response.status_code, response.json()


def test_any_json_object_allows_only_tokens_that_open_an_object(client_in: Client, tiny_model) -> None:
    status, data = api(client_in, response_format="json_object", sample=True, seed=1)
    assert status == 200, data
    names = [s["name"] for s in data["stages"]]
    assert names[:3] == ["softmax", "grammar", "repetition_penalty"]  # the mask comes before every stage
    grammar = data["stages"][1]
    tokenizer = load_model(ModelStore(settings.MODEL_DIR), "tiny-llama", device="cpu").tokenizer
    opening = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).startswith("{")]
    assert grammar["kept"] == data["grammar"]["allowed"] == len(opening) > 0
    assert grammar["cut_count"] == data["vocab_size"] - len(opening)
    assert data["sample"]["id"] in opening  # the draw takes an allowed token
    assert data["grammar"]["complete"] is False


def test_the_answer_so_far_moves_the_grammar_on(client_in: Client, tiny_model) -> None:
    schema = json.dumps(COLOUR)
    status, data = api(client_in, response_format="json_schema", json_schema=schema, answer='{"colour": "')
    assert status == 200, data
    allowed = data["grammar"]["allowed"]
    assert 0 < allowed < 10  # only the starts of "red" and "green"
    kept = [b["token"] for b in data["stages"][-1]["top"]]
    assert kept
    assert all(t[0] in "rg" for t in kept)
    status, done = api(
        client_in, response_format="json_schema", json_schema=schema, answer='{"colour": "red"}'
    )
    assert done["grammar"]["complete"] is True


def test_a_bad_schema_or_answer_is_refused_beside_its_field(client_in: Client, tiny_model) -> None:
    status, data = api(client_in, response_format="json_schema", json_schema='{"type": "strin"}')
    assert status == 400
    assert "strin" in data["fields"]["json_schema"][0]
    status, data = api(client_in, response_format="json_schema", json_schema="")
    assert status == 400
    assert "Paste a JSON schema" in data["fields"]["json_schema"][0]
    status, data = api(client_in, response_format="json_object", answer="no json here")
    assert status == 400
    assert "leaves the grammar at its token 1" in data["error"]


def test_the_page_shows_the_grammar_row_and_its_fields(client_in: Client, tiny_model) -> None:
    page = client_in.get(reverse("inspect:next-token")).content.decode()
    assert 'name="response_format"' in page
    assert 'name="json_schema"' in page
    assert 'name="answer"' in page
    data = {"model": "tiny-llama", "text": "Hello", "response_format": "json_object"}
    html = client_in.post(
        reverse("inspect:next-token"), data, headers={"HX-Request": "true"}
    ).content.decode()
    assert re.search(r"<td>2\. Grammar</td>\s*<td class=\"num\">\d+</td>", html)
    assert 'data-testid="grammar-note"' in html
    bad = {**data, "response_format": "json_schema", "json_schema": "[1]"}
    response = client_in.post(reverse("inspect:next-token"), bad, headers={"HX-Request": "true"})
    assert response["HX-Reswap"] == "none"
    assert re.search(
        r'id="error-json_schema" role="alert" hx-swap-oob="true">A JSON schema is a JSON object',
        response.content.decode(),
    )


def test_no_template_comment_shows_on_the_page(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("inspect:next-token")).content.decode()
    assert "{#" not in html  # a {# #} comment spans one line only: a longer one was shown as text
