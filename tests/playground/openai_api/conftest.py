"""The /v1 API's site on the tiny models: the tiny Llama (with a ChatML template) and the tiny BERT encoder
in the test's store, the Llama's engine started as the web server's preload leaves it, and an API key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from playground.apikeys import services as apikeys
from playground.chat.services import engine_for
from tests.conftest import TINY_NAME


@pytest.fixture
def models(tiny_model, tiny_bert, settings):
    settings.REDIS_URL = ""  # the keys' counters in the database
    engine_for(TINY_NAME)
    return tiny_model, tiny_bert


@pytest.fixture
def secret(user, models) -> str:
    return apikeys.create_key(user, "script")[1]


class Api:
    """A client as a script is one: a bearer key, no cookie, and Django's CSRF checks on."""

    def __init__(self, secret: str | None) -> None:
        self.client = Client(enforce_csrf_checks=True)
        self.headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    def get(self, path: str) -> Any:
        return self.client.get(f"/v1/{path}", headers=self.headers)

    def post(self, path: str, body: Any, **headers: str) -> Any:
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.post(
            f"/v1/{path}", data=data, content_type="application/json", headers={**self.headers, **headers}
        )


@pytest.fixture
def api(secret: str) -> Api:
    return Api(secret)


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": TINY_NAME, "messages": [{"role": "user", "content": "Hello there"}], **fields}


def events_of(response) -> list[dict[str, Any]]:
    """The chunks of a server-sent event stream, which must end with `data: [DONE]`."""
    assert response["Content-Type"].startswith("text/event-stream")
    body = b"".join(response).decode()  # the test client reads the async stream for us
    payloads = [part.removeprefix("data: ") for part in body.split("\n\n") if part]
    assert payloads[-1] == "[DONE]", payloads[-3:]
    return [json.loads(p) for p in payloads[:-1]]
