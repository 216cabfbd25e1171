"""Who may call /v1: an API key, or the browser's session with its CSRF token; nobody else, and never a
redirect to the login page. A key's limits answer 429 with Retry-After, and its usage is counted."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from playground.apikeys import counters
from playground.apikeys import services as apikeys
from playground.apikeys.models import ApiKeyUsage
from tests.conftest import TINY_BERT, TINY_NAME
from tests.playground.openai_api.conftest import Api, chat

pytestmark = pytest.mark.django_db


def test_models_lists_the_catalog_in_openai_shape(api: Api, tiny_model) -> None:
    response = api.get("models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == {TINY_NAME, TINY_BERT}  # the encoder too: it serves /v1/embeddings
    assert by_id[TINY_NAME]["object"] == "model"
    assert by_id[TINY_NAME]["owned_by"] == "playground"
    assert isinstance(by_id[TINY_NAME]["created"], int)
    assert api.get(f"models/{TINY_NAME}").json() == by_id[TINY_NAME]


def test_an_unknown_model_is_404_model_not_found(api: Api) -> None:
    response = api.get("models/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    response = api.post("chat/completions", chat(model="nope"))
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "No model named 'nope' in the catalog.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_no_key_and_no_session_is_401_not_the_login_page(models) -> None:
    for response in (Api(None).get("models"), Api(None).post("chat/completions", chat())):
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["type"] == "authentication_error"
        assert "Bearer" in error["message"]


def test_a_wrong_or_revoked_key_is_401(user, models) -> None:
    key, secret = apikeys.create_key(user, "old")
    assert Api(secret).get("models").status_code == 200
    apikeys.revoke_key(key, by=user)
    assert Api(secret).get("models").status_code == 401
    assert Api("pg-" + "x" * 43).get("models").json()["error"]["message"] == "Invalid API key."


def test_a_key_needs_no_csrf_token_but_a_session_does(api: Api, user) -> None:
    assert api.post("chat/completions", chat(max_tokens=2)).status_code == 200  # checks on, no token
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.cookies["csrftoken"] = "k" * 32  # as a page of the site sets it
    refused = browser.post("/v1/chat/completions", chat(max_tokens=2), content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    token = browser.cookies["csrftoken"].value
    answered = browser.post(
        "/v1/chat/completions",
        chat(max_tokens=2),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert answered.status_code == 200
    assert browser.get("/v1/models").status_code == 200  # a GET needs no token


def test_usage_is_added_to_the_key(api: Api, user) -> None:
    # greedy: a sampled answer of the random tiny model may draw its end token before the third
    body = api.post("chat/completions", chat(max_tokens=3, temperature=0)).json()
    row = ApiKeyUsage.objects.get(model_name=TINY_NAME)
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (
        1,
        body["usage"]["prompt_tokens"],
        body["usage"]["completion_tokens"],
    )
    assert row.completion_tokens == 3


def test_a_key_over_its_limit_gets_429_with_retry_after(user, models, monkeypatch) -> None:
    now = time.time()
    monkeypatch.setattr(counters, "clock", lambda: now - now % 60 + 15)  # both requests in one minute
    key, secret = apikeys.create_key(user, "slow")
    key.requests_per_minute = 1
    key.save()
    api = Api(secret)
    assert api.post("chat/completions", chat(max_tokens=1)).status_code == 200
    refused = api.post("chat/completions", chat(max_tokens=1))
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused["Retry-After"]) == 45  # the seconds left in that minute


def test_every_view_takes_only_its_methods(api: Api) -> None:
    assert api.client.put("/v1/chat/completions", headers=api.headers).status_code == 405
    assert api.client.post("/v1/models", headers=api.headers).status_code == 405
    unknown = api.get("engines")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_url"
