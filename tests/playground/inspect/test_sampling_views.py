from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from playground.core.services import model_cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    yield
    model_cache().clear()


def post_api(client: Client, name: str, body: object) -> tuple[int, dict]:
    response = client.post(reverse(name), json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def test_the_page_shows_the_distribution_for_the_example_prompt(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("inspect:next-token")).content.decode()
    assert "After all stages" in html
    assert 'data-testid="final-bars"' in html
    assert html.count('<li title="id ') == 20  # top-20 bars by default
    assert "Cumulative probability" in html


def test_moving_a_slider_returns_only_the_result_partial(client_in: Client, tiny_model) -> None:
    data = {
        "model": "tiny-llama",
        "text": "Hello",
        "temperature": "0.5",
        "top_k": "5",
        "top_p": "1",
        "min_p": "0",
        "repetition_penalty": "1",
        "order": "temperature,top_k,top_p,min_p",
        "top_n": "10",
    }
    response = client_in.post(reverse("inspect:next-token"), data, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html
    assert html.count('<li title="id ') == 5  # top-k 5 leaves five tokens to draw


def test_the_sample_button_shows_the_seed_and_the_rank(client_in: Client, tiny_model) -> None:
    data = {"model": "tiny-llama", "text": "Hello", "seed": "42", "sample": "1"}
    html = client_in.post(
        reverse("inspect:next-token"), data, headers={"HX-Request": "true"}
    ).content.decode()
    assert "with seed <strong>42</strong>" in html
    assert re.search(r"rank \d+ of the final distribution", html)
    again = client_in.post(
        reverse("inspect:next-token"), data, headers={"HX-Request": "true"}
    ).content.decode()
    drawn = re.findall(r'Drew <code class="tok">(.*?)</code>\s+\(id (\d+)\)', html)
    assert drawn
    assert drawn == re.findall(r'Drew <code class="tok">(.*?)</code>\s+\(id (\d+)\)', again)


def test_bad_settings_get_a_clear_message_beside_their_field(client_in: Client, tiny_model) -> None:
    data = {"model": "tiny-llama", "text": "Hello", "temperature": "-1", "seed": "-3"}
    response = client_in.post(reverse("inspect:next-token"), data, headers={"HX-Request": "true"})
    assert response.status_code == 200  # htmx swaps nothing of a 4xx; the page without it gets its 400
    assert response["HX-Reswap"] == "none"  # the last result stays on the page, marked stale
    html = response.content.decode()
    beside = dict(
        re.findall(
            r'<small class="field-error" id="error-(\w+)" role="alert" hx-swap-oob="true">(.*?)</small>', html
        )
    )
    assert "greater than or equal to 0" in beside["temperature"]
    assert "greater than or equal to 0" in beside["seed"]
    assert beside["top_n"] == ""  # every field's slot comes back, so a fixed one clears
    assert "still the one for the last settings that were valid" in html
    fixed = client_in.post(
        reverse("inspect:next-token"),
        {"model": "tiny-llama", "text": "Hello"},
        headers={"HX-Request": "true"},
    )
    assert fixed.status_code == 200
    cleared = dict(
        re.findall(r'id="error-(\w+)" role="alert" hx-swap-oob="true">(.*?)</small>', fixed.content.decode())
    )
    assert cleared["temperature"] == cleared["seed"] == ""
    assert '<p id="stale" hidden hx-swap-oob="true">' in fixed.content.decode()
    page = client_in.post(reverse("inspect:next-token"), data)  # without JavaScript: the page, with both
    assert page.status_code == 400
    assert page.content.decode().count("greater than or equal to 0") == 2
    data = {"model": "no-such-model", "text": "Hello"}
    html = client_in.post(
        reverse("inspect:next-token"), data, headers={"HX-Request": "true"}
    ).content.decode()
    assert "Unknown model no-such-model" in html


def test_the_api_answers_every_stage_and_a_reproducible_sample(client_in: Client, tiny_model) -> None:
    body = {
        "model": "tiny-llama",
        "text": "Hello world",
        "temperature": 0.8,
        "top_p": 0.9,
        "sample": True,
        "seed": 3,
    }
    status, data = post_api(client_in, "inspect:next-token-api", body)
    assert status == 200, data
    assert [s["name"] for s in data["stages"]] == [
        "softmax",
        "repetition_penalty",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
    ]
    assert data["vocab_size"] == tiny_model.facts.vocab_size
    assert data["stages"][0]["kept"] == data["vocab_size"]  # softmax over the whole vocabulary
    assert data["sample"]["seed"] == 3
    _, again = post_api(client_in, "inspect:next-token-api", body)
    assert again["sample"]["id"] == data["sample"]["id"]


def test_greedy_picks_the_most_likely_token(client_in: Client, tiny_model) -> None:
    _, data = post_api(
        client_in,
        "inspect:next-token-api",
        {"model": "tiny-llama", "text": "Hello", "temperature": 0, "sample": True},
    )
    assert data["sample"]["rank"] == 1
    assert data["sample"]["id"] == data["stages"][0]["top"][0]["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "tiny-llama", "text": ""}, "Type a prompt first."),
        ({"model": "tiny-llama", "text": "x" * 20_001}, "longer than 20,000 characters (it has 20001)"),
        ({"model": "nope", "text": "hi"}, "Unknown model nope"),
        ({"model": "tiny-llama", "text": "hi", "top_p": 2}, "less than or equal to 1"),
        ({"model": "tiny-llama", "text": "hi", "order": "top_k,top_k"}, "Select a valid choice"),
    ],
)
def test_the_api_refuses_bad_input_with_a_message(client_in: Client, tiny_model, body, message) -> None:
    status, data = post_api(client_in, "inspect:next-token-api", body)
    assert status == 400
    assert message in data["error"]


def test_the_api_refuses_malformed_json(client_in: Client, tiny_model) -> None:
    response = client_in.post(reverse("inspect:next-token-api"), "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "The request body is not valid JSON."


def test_a_prompt_longer_than_the_token_limit_is_refused(client_in: Client, tiny_model, settings) -> None:
    settings.INSPECT_MAX_TOKENS = 8
    status, data = post_api(
        client_in, "inspect:next-token-api", {"model": "tiny-llama", "text": "hello " * 30}
    )
    assert status == 400
    assert "the limit is 8" in data["error"]


def test_the_api_needs_the_csrf_token(user, tiny_model) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(
        reverse("inspect:next-token-api"),
        json.dumps({"model": "tiny-llama", "text": "hi"}),
        content_type="application/json",
    )
    assert response.status_code == 403


def test_the_logit_lens_page_opens_at_once_and_runs_when_asked(
    client_in: Client, tiny_model, monkeypatch
) -> None:
    from playground.inspect.views import lens as lens_view

    calls = []
    run = lens_view.run_lens
    monkeypatch.setattr(lens_view, "run_lens", lambda *a, **k: calls.append(a) or run(*a, **k))  # counts runs
    html = client_in.get(reverse("inspect:logit-lens")).content.decode()
    assert calls == []  # nothing computed for a plain visit
    assert 'data-testid="lens-idle"' in html
    assert "The Eiffel Tower is in the city of" in html  # the example waits in the box
    assert 'hx-indicator="#lens-area"' in html
    assert 'data-testid="lens-running"' in html
    linked = client_in.get(reverse("inspect:logit-lens") + "?model=tiny-llama&text=Hello").content.decode()
    assert len(calls) == 1  # a link that names its prompt runs it
    assert 'data-testid="lens"' in linked


def test_the_logit_lens_page_draws_every_layer_for_every_position(client_in: Client, tiny_model) -> None:
    response = client_in.post(reverse("inspect:logit-lens"), {"model": "tiny-llama", "text": "Hello world"})
    html = response.content.decode()
    assert 'data-testid="lens"' in html
    for label in ["layer 2 (output)", "layer 1", "embeddings"]:
        assert f'<th class="layer">{label}</th>' in html
    assert html.count('class="settles') >= 1


def test_the_logit_lens_api_marks_where_each_prediction_settles(client_in: Client, tiny_model) -> None:
    status, data = post_api(
        client_in, "inspect:logit-lens-api", {"model": "tiny-llama", "text": "Hello world"}
    )
    assert status == 200, data
    assert data["layers"] == 2
    assert [r["layer"] for r in data["rows"]] == [2, 1, 0]
    assert len(data["rows"][0]["cells"]) == len(data["tokens"])
    for position, layer in enumerate(data["settled_at"]):
        row = next(r for r in data["rows"] if r["layer"] == layer)
        assert row["cells"][position]["settles_here"]


def test_the_logit_lens_refuses_long_prompts(client_in: Client, tiny_model) -> None:
    status, data = post_api(
        client_in, "inspect:logit-lens-api", {"model": "tiny-llama", "text": "hello " * 80}
    )
    assert status == 400
    assert "at most 48 positions" in data["error"]


def test_model_text_is_escaped_on_the_page(client_in: Client, tiny_model) -> None:
    html = client_in.post(
        reverse("inspect:logit-lens"), {"model": "tiny-llama", "text": "<script>x</script>"}
    ).content.decode()
    assert "<script>x" not in html
