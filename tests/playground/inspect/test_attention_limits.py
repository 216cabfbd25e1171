"""The attention endpoints under the capture cache's limits: too big is a 400, busy is a 503."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from playground.inspect.services import attention as services

pytestmark = pytest.mark.django_db
SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(autouse=True)
def fresh_capture_cache(monkeypatch) -> None:
    monkeypatch.setattr(services, "_cache", None)


def run(client: Client, text: str = SENTENCE):
    body = {"text": text, "model": "tiny-llama", "as_chat": False}
    return client.post("/api/attention", json.dumps(body), content_type="application/json")


def test_a_capture_bigger_than_the_cache_is_refused_with_a_reason(
    client_in: Client, tiny_model, settings
) -> None:
    settings.INSPECT_ATTENTION_CACHE_MB = 1  # a 217-token capture of the tiny model needs about 3 MB
    response = run(client_in, SENTENCE * 7)
    assert response.status_code == 400
    assert (
        "this server keeps at most 1 MB of attention captures. Use a shorter text."
        in response.json()["error"]
    )
    assert run(client_in).status_code == 200  # a short one still fits


def test_a_capture_that_finds_no_free_slot_is_told_to_try_again(
    client_in: Client, tiny_model, settings
) -> None:
    settings.INSPECT_ATTENTION_CONCURRENT = 1
    settings.INSPECT_ATTENTION_WAIT_SECONDS = 0.2
    with services.capture_cache().reserve(1):  # another capture is running
        response = run(client_in)
        assert response.status_code == 503
        assert response.json()["error"] == (
            "The server is busy with other attention captures; try again in a few seconds."
        )
        page = client_in.post(
            "/attention/", {"text": SENTENCE, "model": "tiny-llama"}, headers={"HX-Request": "true"}
        )
        assert "try again in a few seconds" in page.content.decode()
    assert run(client_in).status_code == 200


def test_the_cache_counts_what_a_run_keeps(client_in: Client, tiny_model) -> None:
    meta = run(client_in).json()
    cache = services.capture_cache()
    assert cache.total_bytes() == meta["kept_bytes"]
    assert cache.reserved_bytes() == 0
