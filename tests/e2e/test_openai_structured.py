"""End to end with the official `openai` SDK on the real default model (Daphne, the session's site):
`response_format` json_schema answers that validate against their schemas, and a tool call returned as
`tool_calls` whose arguments validate against the tool's parameters."""

from __future__ import annotations

import json

import jsonschema
import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.e2e.test_openai_api import client  # noqa: F401 - the SDK's client with a key of its own
from tests.schemas import QUESTIONS, REAL_WEATHER

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("question", "schema"), QUESTIONS.items(), ids=["city", "colours", "nested"])
def test_json_schema_answers_validate(client, question: str, schema: dict) -> None:  # noqa: F811
    answer = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": f"{question} Answer in JSON."}],
        temperature=0,
        max_tokens=120,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )
    (choice,) = answer.choices
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), schema)


def test_a_tool_call_comes_back_as_tool_calls(client) -> None:  # noqa: F811
    answer = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
        temperature=0,
        max_tokens=100,
        tools=[REAL_WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,  # one call: greedy decoding of a small model may repeat calls for ever
    )
    (choice,) = answer.choices
    assert choice.finish_reason == "tool_calls", choice.message.content
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, REAL_WEATHER["function"]["parameters"])
    assert arguments["city"] == "Oslo"
    # the call and its result go back, and the model answers in words
    followed = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[
            {"role": "user", "content": "What is the weather in Oslo?"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees"},
        ],
        temperature=0,
        max_tokens=40,
        tools=[REAL_WEATHER],
    )
    assert followed.choices[0].finish_reason in ("stop", "length", "tool_calls")
