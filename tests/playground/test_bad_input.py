"""Input that used to reach a 500 (or a socket closed with 1011) is answered with a 4xx and a sentence:
JSON nested fifty thousand deep, a lone surrogate in text, a number or a list where text belongs, a body
over the size limit, a model whose tokenizer file does not parse."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from playground.core.services import model_cache, model_store
from playground.inspect.services import attention as attention_services
from tests.playground.chat.test_consumer import frames_until, headers_for, open_socket, send_frame

APIS = ["/api/tokenize", "/api/attention", "/api/next-token", "/api/logit-lens"]
MODEL_APIS = APIS[1:]  # the tokenize endpoint names its tokenizers in "models"
DEEP = "[" * 50_000 + "]" * 50_000
SURROGATE = '"a\\ud800b"'  # the JSON escape of half a surrogate pair, between two letters


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch) -> Any:
    monkeypatch.setattr(attention_services, "_cache", None)
    yield
    model_cache().clear()


def post(client: Client, path: str, body: str, **extra: Any):
    return client.post(path, body, content_type="application/json", **extra)


def body_for(path: str, text_json: str = '"Hello there"') -> str:
    """A request for one endpoint with the given JSON text for "text" (raw JSON, so escapes survive)."""
    who = '"models": ["tiny-llama"]' if path == "/api/tokenize" else '"model": "tiny-llama"'
    return f'{{"text": {text_json}, {who}}}'


# --- JSON endpoints -------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("path", APIS)
@pytest.mark.parametrize(
    "body", [DEEP, '{"text": ' + DEEP + "}", "[" * 100 + "]" * 100], ids=["array", "in-a-field", "100-deep"]
)
def test_deeply_nested_json_is_refused_with_a_400(
    client_in: Client, tiny_model, path: str, body: str
) -> None:
    response = post(client_in, path, body)
    assert response.status_code == 400
    assert response.json() == {"error": "The JSON nests more than 64 levels deep; flatten it.", "fields": {}}


@pytest.mark.django_db
@pytest.mark.parametrize("path", APIS)
def test_a_lone_surrogate_in_the_text_is_refused_with_its_position(
    client_in: Client, tiny_model, path: str
) -> None:
    response = post(client_in, path, body_for(path, SURROGATE))
    assert response.status_code == 400
    answer = response.json()
    assert "is not valid Unicode text (a lone surrogate at character 2)" in answer["error"]
    assert answer["fields"]["text"] == [answer["error"]]


@pytest.mark.django_db
@pytest.mark.parametrize("path", APIS)
@pytest.mark.parametrize(
    ("value", "kind"),
    [('["Hello"]', "a list"), ("12", "a number"), ('{"a": 1}', "an object"), ("true", "true or false")],
)
def test_text_that_is_not_a_string_is_refused(
    client_in: Client, tiny_model, path: str, value: str, kind: str
) -> None:
    response = post(client_in, path, body_for(path, value))
    assert response.status_code == 400
    assert f"must be a string, not {kind}" in response.json()["error"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", APIS)
def test_a_body_over_the_size_limit_is_answered_413_in_json(
    client_in: Client, tiny_model, path: str, settings
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    response = post(client_in, path, body_for(path, json.dumps("x" * 5_000)))
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "The request body is over the limit of 2,000 bytes; send less.",
        "fields": {},
    }


@pytest.mark.django_db
def test_an_oversized_form_body_to_the_api_is_json_even_through_the_csrf_check(
    django_user_model, tiny_model, settings
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user(username="scripter", password="x" * 20))
    client.get(reverse("inspect:tokenize"))
    token = client.cookies["csrftoken"].value
    # A form body: the CSRF check reads it (for csrfmiddlewaretoken) before any view does.
    response = client.post("/api/tokenize", {"text": "x" * 5_000}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 413
    assert "over the limit of 2,000 bytes" in response.json()["error"]


@pytest.mark.django_db
def test_an_oversized_form_post_to_a_page_keeps_djangos_page(client_in: Client, tiny_model, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    response = client_in.post(reverse("inspect:logit-lens"), {"text": "x" * 5_000, "model": "tiny-llama"})
    assert response.status_code == 400
    assert "application/json" not in response["Content-Type"]


# --- a tokenizer file that does not parse ---------------------------------------------------------
@pytest.fixture
def broken_tokenizer(tiny_model) -> Path:
    path = model_store().path("tiny-llama") / "tokenizer.json"
    path.write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": 5}}')
    return path


@pytest.mark.django_db
@pytest.mark.parametrize("path", APIS)
def test_a_tokenizer_that_does_not_parse_is_a_400_with_the_reason(
    client_in: Client, broken_tokenizer: Path, path: str
) -> None:
    response = post(client_in, path, body_for(path))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "The tokenizer of tiny-llama cannot be read (" in error
    assert "import the model again" in error


@pytest.mark.django_db
def test_the_tokenizer_lab_page_says_why_a_tokenizer_cannot_be_read(
    client_in: Client, broken_tokenizer: Path
) -> None:
    response = client_in.post(reverse("inspect:tokenize"), {"text": "Hello", "models": ["model:tiny-llama"]})
    assert response.status_code < 500
    assert "The tokenizer of tiny-llama cannot be read" in response.content.decode()


@pytest.mark.django_db
def test_the_logit_lens_page_says_why_a_tokenizer_cannot_be_read(
    client_in: Client, broken_tokenizer: Path
) -> None:
    response = client_in.post(reverse("inspect:logit-lens"), {"text": "Hello", "model": "tiny-llama"})
    assert response.status_code < 500
    assert "The tokenizer of tiny-llama cannot be read" in response.content.decode()


# --- the chat socket ------------------------------------------------------------------------------
def socket_replies(user: Any, *frames: str) -> list[dict[str, Any]]:
    """The reply to each raw text frame, then proof that the socket still answers."""
    headers = headers_for(user)

    async def scenario() -> list[dict[str, Any]]:
        communicator = await open_socket(headers)
        replies = []
        for frame in frames:
            await communicator.send_to(text_data=frame)
            replies.append(await communicator.receive_json_from(timeout=30))
        await communicator.send_json_to({"type": "ping"})
        replies.append((await frames_until(communicator, "pong"))[-1])
        await communicator.disconnect()
        return replies

    return asyncio.run(scenario())


def frame_with(**fields: Any) -> str:
    return json.dumps({**send_frame(), **fields})


@pytest.mark.django_db(transaction=True)
def test_the_socket_refuses_deep_json_and_stays_open(user, tiny_model) -> None:
    deep_content = frame_with(content="x").replace('"x"', DEEP)
    *errors, pong = socket_replies(user, DEEP, deep_content)
    assert pong == {"type": "pong"}
    assert errors == [{"type": "error", "error": "The JSON nests more than 64 levels deep; flatten it."}] * 2


@pytest.mark.django_db(transaction=True)
def test_the_socket_refuses_a_lone_surrogate_with_its_position(user, tiny_model) -> None:
    frames = [
        frame_with(content="x").replace('"x"', SURROGATE),
        frame_with(system="x").replace('"x"', SURROGATE),
        json.dumps(send_frame(stop_sequences=["x"])).replace('"x"', SURROGATE),
    ]
    content, system, stop, pong = socket_replies(user, *frames)
    assert pong == {"type": "pong"}
    assert content["fields"]["content"] == [
        "The message is not valid Unicode text (a lone surrogate at character 2)."
    ]
    assert system["fields"]["system"] == [
        "The system prompt is not valid Unicode text (a lone surrogate at character 2)."
    ]
    assert "A stop sequence is not valid Unicode text" in stop["fields"]["stop_sequences"][0]
    assert "UnicodeEncodeError" not in json.dumps([content, system, stop])


@pytest.mark.django_db(transaction=True)
def test_the_socket_refuses_content_that_is_not_a_string(user, tiny_model) -> None:
    as_list, as_number, pong = socket_replies(
        user, frame_with(content=["Hello", "there"]), frame_with(content=42)
    )
    assert pong == {"type": "pong"}
    assert as_list["fields"]["content"] == ["The message must be a string, not a list."]
    assert as_number["fields"]["content"] == ["The message must be a string, not a number."]


@pytest.mark.django_db(transaction=True)
def test_the_socket_refuses_ids_no_database_can_hold(user, tiny_model) -> None:
    huge = 10**30
    new, regenerate, branch, pong = socket_replies(
        user,
        frame_with(conversation=huge),
        frame_with(action="regenerate", conversation=1, message=huge),
        frame_with(action="branch", conversation=1, message=1, at=0, token=huge),
    )
    assert pong == {"type": "pong"}
    assert new["error"] == "conversation must be an id or null."
    assert regenerate["error"].startswith('"regenerate" needs "message": a whole number from 1 to')
    assert branch["error"].startswith('"branch" needs "token": a whole number from 0 to')


@pytest.mark.django_db(transaction=True)
def test_a_raw_surrogate_in_a_frame_is_measured_not_crashed_on(user, tiny_model) -> None:
    """A frame the test client hands over as a Python string with a raw surrogate in it (no socket
    carries one: UTF-8 frames cannot) still gets the form's answer, not a 1011 close."""
    (reply, pong) = socket_replies(user, frame_with(content="x").replace('"x"', '"a\ud800b"'))
    assert pong == {"type": "pong"}
    assert "lone surrogate at character 2" in reply["error"]


# --- numbers too large for a float (found by tests/playground/test_fuzz.py) ------------------------
@pytest.mark.django_db
def test_a_number_too_large_for_a_float_is_refused_by_the_api(client_in: Client, tiny_model) -> None:
    body = '{"text": "Hello", "model": "tiny-llama", "temperature": 1' + "0" * 400 + "}"
    response = post(client_in, "/api/next-token", body)
    assert response.status_code == 400
    assert response.json()["fields"]["temperature"] == ["Enter a number."]


@pytest.mark.django_db(transaction=True)
def test_a_number_too_large_for_a_float_is_refused_by_the_socket(user, tiny_model) -> None:
    reply, pong = socket_replies(user, json.dumps(send_frame(temperature=10**400)))
    assert pong == {"type": "pong"}
    assert reply["fields"]["temperature"] == ["Enter a number."]
