"""Structured output through /v1 on the tiny random model: `response_format` json_object and json_schema
answers that parse and validate, `tools` answered as `tool_calls` (whole, or streamed), tool turns in the
history, and what cannot be enforced refused naming its parameter."""

from __future__ import annotations

import json

import jsonschema
import pytest

from playground.chat.services import engine_for
from tests.conftest import CHATML_TEMPLATE, TINY_NAME
from tests.playground.openai_api.conftest import Api, chat, events_of
from tests.schemas import TINY_WEATHER

pytestmark = pytest.mark.django_db
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 99},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
# A template that renders the tools in a line of its own (Qwen's, Llama 3.1's... render them at length):
# the tiny model reads 256 tokens, fewer than the plain tools prompt takes in its byte-sized tokens.
TOOLS_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\nTools: ' + (tools | map(attribute='function') "
    "| map(attribute='name') | join(', ')) + '<|im_end|>\n' }}{% endif %}" + CHATML_TEMPLATE
)


@pytest.fixture
def tools_template(models, monkeypatch):
    tokenizer = engine_for(TINY_NAME).loaded.tokenizer
    monkeypatch.setattr(tokenizer, "chat_template", TOOLS_TEMPLATE)
    return tokenizer


def as_schema(schema: dict, strict: bool = True) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": strict}}


def test_json_schema_answers_validate_and_json_object_answers_are_objects(api: Api) -> None:
    body = chat(max_tokens=200, n=3, seed=1, response_format=as_schema(PERSON))
    response = api.post("chat/completions", body)
    assert response.status_code == 200, response.json()
    for choice in response.json()["choices"]:
        assert choice["finish_reason"] == "stop"  # the object was complete: the answer ended there
        jsonschema.validate(json.loads(choice["message"]["content"]), PERSON)
    body = chat(max_tokens=30, temperature=0, response_format={"type": "json_object"})
    content = api.post("chat/completions", body).json()["choices"][0]["message"]["content"]
    assert content.startswith("{")


def test_a_required_tool_call_comes_back_as_tool_calls(api: Api, tools_template) -> None:
    body = chat(
        max_tokens=120, seed=3, tools=[TINY_WEATHER], tool_choice="required", parallel_tool_calls=False
    )
    response = api.post("chat/completions", body)
    assert response.status_code == 200, response.json()
    (choice,) = response.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]), TINY_WEATHER["function"]["parameters"])


def test_a_streamed_tool_call_arrives_whole_before_its_finish_reason(api: Api, tools_template) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    body = chat(max_tokens=120, seed=4, tools=[TINY_WEATHER], tool_choice=named, stream=True)
    chunks = events_of(api.post("chat/completions", body))
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert not any(d.get("content") for d in deltas)  # the call's text is not streamed as content
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert calls
    assert calls[0]["index"] == 0
    assert calls[0]["function"]["name"] == "get_weather"
    json.loads(calls[0]["function"]["arguments"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_conversation_with_a_call_and_its_result_goes_on(api: Api) -> None:
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
    ]
    # no tools offered now: the tiny model's template knows none, so the turns are plain text
    response = api.post("chat/completions", chat(messages=messages, max_tokens=5))
    assert response.status_code == 200, response.json()
    assert response.json()["usage"]["prompt_tokens"] > 60  # the call and its result are in the prompt


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"response_format": as_schema({"type": "strin"})}, "response_format", "Invalid type: strin"),
        ({"response_format": as_schema({"type": "string", "format": "nope"})}, "response_format", "nope"),
        ({"response_format": {"type": "json_schema"}}, "response_format", '"schema"'),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        (
            {"tools": [TINY_WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
            "x",
        ),
        (
            {"tools": [TINY_WEATHER], "response_format": {"type": "json_object"}},
            "response_format",
            "not both",
        ),
        ({"tools": [TINY_WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls", "true or false"),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}
                ]
            },
            "messages[0]",
            "JSON object",
        ),
    ],
)
def test_what_cannot_be_enforced_is_refused_naming_its_parameter(
    api: Api, fields: dict, param: str, words: str
) -> None:
    response = api.post("chat/completions", chat(**fields))
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["param"] == param
    assert words in error["message"]


def test_a_lenient_schema_is_enforced_without_what_cannot_be(api: Api) -> None:
    schema = {"type": "object", "properties": {"d": {"type": "string", "format": "nope", "maxLength": 4}}}
    body = chat(max_tokens=60, seed=2, response_format=as_schema({**schema, "required": ["d"]}, strict=False))
    response = api.post("chat/completions", body)
    assert response.status_code == 200, response.json()
