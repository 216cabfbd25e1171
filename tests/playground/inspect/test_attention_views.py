"""The attention page and its JSON and binary endpoints, on the tiny Llama and a tiny BERT."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from playground.inspect.services import attention as services

pytestmark = pytest.mark.django_db
SENTENCE = "The quick brown fox jumps over the lazy dog."
API = "/api/attention"


@pytest.fixture(autouse=True)
def fresh_capture_cache(monkeypatch) -> None:
    """Each test starts with an empty cache made from its own settings."""
    monkeypatch.setattr(services, "_cache", None)


def run(client: Client, **data: Any):
    body = {"text": SENTENCE, "model": "tiny-llama", "as_chat": False, **data}
    return client.post(API, json.dumps(body), content_type="application/json")


def meta_in(html: str) -> list[dict[str, Any]]:
    return [
        json.loads(m)
        for m in re.findall(r'<script id="attention-meta-\d+" type="application/json">(.*?)</script>', html)
    ]


# --- the page ------------------------------------------------------------------------------------------
def test_the_page_offers_every_catalog_model_and_states_its_limit(
    client_in: Client, tiny_model, tiny_bert
) -> None:
    html = client_in.get(reverse("inspect:attention")).content.decode()
    assert "<h1>Attention</h1>" in html
    assert '<option value="tiny-llama" selected>' in html  # the only causal model is picked first
    assert '<option value="tiny-bert"' in html  # encoders too
    assert "up to 1024 tokens" in html
    assert 'name="as_chat"' in html
    assert 'name="compare"' in html
    assert 'aria-current="page">Attention</a>' in html
    assert "/static/inspect/attention.js" in html


def test_a_run_swaps_in_a_panel_whose_meta_the_script_draws_from(client_in: Client, tiny_model) -> None:
    response = client_in.post(
        reverse("inspect:attention"),
        {"text": SENTENCE, "model": "tiny-llama"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html  # only the results partial
    [meta] = meta_in(html)
    assert (meta["model"], meta["num_layers"], meta["num_heads"], meta["num_kv_heads"]) == (
        "tiny-llama",
        2,
        4,
        2,
    )
    assert 'data-fact="kv_heads">2<' in html
    assert "grouped-query" in html
    assert "masked: a token cannot look at later tokens" in html


def test_side_by_side_shows_the_causal_model_and_the_encoder(
    client_in: Client, tiny_model, tiny_bert
) -> None:
    response = client_in.post(
        reverse("inspect:attention"),
        {"text": SENTENCE, "model": "tiny-llama", "compare": "tiny-bert", "as_chat": "on"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    llama, bert = meta_in(html)
    assert (llama["model"], llama["is_causal"], llama["as_chat"]) == ("tiny-llama", True, True)
    assert (bert["model"], bert["is_causal"], bert["as_chat"]) == ("tiny-bert", False, False)
    assert bert["tokens"][0] == "[CLS]"
    assert "tiny-bert has no chat template, so it read the text as is." in html
    assert '<span class="badge badge-bi">bidirectional</span>' in html


def test_token_text_reaches_the_page_escaped(client_in: Client, tiny_model) -> None:
    text = "</script><script>alert(1)</script><b>x</b>"
    html = client_in.post(
        reverse("inspect:attention"), {"text": text, "model": "tiny-llama"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert "<script>alert(1)" not in html
    assert "<b>x</b>" not in html
    assert "".join(meta_in(html)[0]["tokens"]) == text  # the page still gets every character back


def test_the_page_explains_bad_input_in_place(client_in: Client, tiny_model, settings) -> None:
    settings.INSPECT_MAX_TOKENS = 5
    htmx = {"HX-Request": "true"}
    page = reverse("inspect:attention")
    too_long = client_in.post(page, {"text": SENTENCE, "model": "tiny-llama"}, headers=htmx)
    assert too_long.status_code == 200  # htmx swaps only 2xx answers
    assert "the limit is 5 tokens. Shorten it and run again." in too_long.content.decode()
    unknown = client_in.post(page, {"text": "hi", "model": "nope"}, headers=htmx).content.decode()
    assert "Unknown model nope: pick one from the catalog." in unknown
    blank = client_in.post(page, {"text": "   ", "model": "tiny-llama"})
    assert blank.status_code == 400
    assert "<html" in blank.content.decode()
    assert "Type some text to look at." in blank.content.decode()


# --- the JSON API --------------------------------------------------------------------------------------
def test_the_api_answers_with_the_meta_of_a_capture(client_in: Client, tiny_model, store) -> None:
    response = run(client_in)
    assert response.status_code == 200
    meta = response.json()
    n = meta["num_tokens"]
    assert n == len(meta["tokens"]) == len(meta["token_ids"]) > 5
    assert (meta["num_layers"], meta["num_heads"], meta["num_kv_heads"]) == (2, 4, 2)
    assert meta["kv_head_of"] == [0, 0, 1, 1]
    assert meta["is_causal"] is True
    capture_id = meta["capture_id"]
    assert meta["url"] == f"/api/attention/{capture_id}"
    assert meta["overview"]["url"] == f"/api/attention/{capture_id}/overview"
    assert meta["overview"]["shape"] == [2, 4, n, n]
    assert meta["head_url"] == f"/api/attention/{capture_id}/layer/{{layer}}/head/{{head}}"
    assert client_in.get(meta["url"]).json() == meta  # the meta can be read again by id


def test_the_overview_is_one_uint8_block_of_the_stated_shape(client_in: Client, tiny_model) -> None:
    meta = run(client_in).json()
    response = client_in.get(meta["overview"]["url"])
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Attention-Dtype"] == "uint8"
    shape = [int(n) for n in response["X-Attention-Shape"].split(",")]
    assert shape == meta["overview"]["shape"]
    overview = np.frombuffer(response.content, dtype=np.uint8).reshape(shape)
    n = meta["num_tokens"]
    assert not overview[:, :, np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]].any()  # masked cells are 0
    assert (overview[:, :, np.arange(n), np.arange(n)] > 0).all()  # every token sees itself


def test_a_head_and_a_layer_mean_arrive_as_float16_rows_summing_to_one(client_in: Client, tiny_model) -> None:
    meta = run(client_in).json()
    n = meta["num_tokens"]
    for url in (meta["head_url"].format(layer=1, head=3), meta["mean_url"].format(layer=0)):
        response = client_in.get(url)
        assert response["Content-Type"] == "application/octet-stream"
        assert (response["X-Attention-Dtype"], response["X-Attention-Shape"]) == ("float16", f"{n},{n}")
        assert len(response.content) == meta["head_bytes"] == n * n * 2
        weights = np.frombuffer(response.content, dtype="<f2").reshape(n, n).astype(np.float32)
        assert np.allclose(weights.sum(axis=1), 1, atol=2e-3)
        assert not np.triu(weights, 1).any()
    missing = client_in.get(meta["head_url"].format(layer=0, head=4))
    assert missing.status_code == 404
    assert missing.json()["error"] == "Head 4 does not exist: this model has heads 0-3."


def test_the_api_refuses_text_over_the_token_limit(client_in: Client, tiny_model, settings) -> None:
    settings.INSPECT_MAX_TOKENS = 5
    response = run(client_in)
    assert response.status_code == 400
    assert re.fullmatch(
        r"The text is \d+ tokens for tiny-llama; the limit is 5 tokens\. Shorten it and run again\.",
        response.json()["error"],
    )


def test_the_api_refuses_an_unknown_model_and_malformed_json(client_in: Client, tiny_model) -> None:
    unknown = run(client_in, model="nope")
    assert unknown.status_code == 400
    assert unknown.json()["fields"]["model"] == ["Unknown model nope: pick one from the catalog."]
    broken = client_in.post(API, "{not json", content_type="application/json")
    assert (broken.status_code, broken.json()["error"]) == (400, "The request body is not valid JSON.")
    long_text = run(client_in, text="x" * 20_001)
    assert long_text.status_code == 400
    assert "the limit is 20,000" in long_text.json()["error"]
    assert client_in.get(API).status_code == 405


def test_another_users_capture_is_not_found(client_in: Client, tiny_model, django_user_model) -> None:
    meta = run(client_in).json()
    bob = Client()
    bob.force_login(django_user_model.objects.create_user(username="bob", password="another long password"))
    response = bob.get(meta["overview"]["url"])
    assert response.status_code == 404
    assert "no longer kept on the server" in response.json()["error"]
    assert client_in.get("/api/attention/no-such-capture/layer/0/mean").status_code == 404


def test_an_evicted_capture_says_so_and_the_newest_stays(client_in: Client, tiny_model, settings) -> None:
    settings.INSPECT_ATTENTION_CACHE_CAPTURES = 1
    first, second = run(client_in).json(), run(client_in).json()
    gone = client_in.get(first["overview"]["url"])
    assert gone.status_code == 404
    assert gone.json()["error"].endswith("Run it again.")
    assert client_in.get(second["overview"]["url"]).status_code == 200


def test_posts_without_the_csrf_token_are_refused(user, tiny_model) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert run(client).status_code == 403
    page = client.get(reverse("inspect:attention"))
    token = page.cookies["csrftoken"].value
    ok = client.post(
        API,
        json.dumps({"text": SENTENCE, "model": "tiny-llama"}),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert ok.status_code == 200


def test_strangers_are_sent_to_the_login_page(tiny_model) -> None:
    stranger = Client()
    for response in (
        stranger.get(reverse("inspect:attention")),
        run(stranger),
        stranger.get(f"{API}/x/overview"),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
