"""Structured output on the real default model: JSON that validates against a few schemas, and a tool
call whose arguments validate against its tool's parameters."""

from __future__ import annotations

import json

import jsonschema
import pytest

from llmcore.engine import DoneEvent, Engine, GenerationRequest
from llmcore.grammar import json_schema
from llmcore.loading import load_model
from llmcore.pulls import DEFAULT_MODEL
from llmcore.sampling import SamplingConfig
from llmcore.tools import (
    encode_tool_chat,
    parse_tool_calls,
    parse_tools,
    template_takes_tools,
    tool_constraint,
)
from tests.schemas import QUESTIONS, REAL_WEATHER

pytestmark = pytest.mark.integration
GREEDY = SamplingConfig(temperature=0)


@pytest.fixture(scope="module")
def real(real_model_store):
    return load_model(real_model_store, DEFAULT_MODEL, device="cpu")


@pytest.fixture(scope="module")
def engine(real):
    with Engine(real) as running:  # one engine for both tests: its packed copy takes a while to make
        yield running


def done_of(events) -> DoneEvent:
    done = events[-1]
    assert isinstance(done, DoneEvent)
    return done


def test_json_schema_answers_of_the_default_model_validate(engine) -> None:
    for question, schema in QUESTIONS.items():
        messages = [{"role": "user", "content": f"{question} Answer in JSON."}]
        request = GenerationRequest(
            messages=messages, sampling=GREEDY, max_new_tokens=120, constraint=json_schema(schema)
        )
        done = done_of(engine.generate(request))
        assert done.reason == "stop", done.text
        jsonschema.validate(json.loads(done.text), schema)


def test_the_default_model_calls_a_tool_with_valid_arguments(real, engine) -> None:
    tools = parse_tools([REAL_WEATHER])
    assert not template_takes_tools(real.tokenizer)  # its template has no tools: the plain prompt offers them
    prompt = encode_tool_chat(real, [{"role": "user", "content": "What is the weather in Oslo?"}], tools)
    assert "get_weather" in real.tokenizer.decode(prompt)
    request = GenerationRequest(
        prompt_ids=prompt,
        sampling=GREEDY,
        max_new_tokens=80,
        constraint=tool_constraint(tools, "required"),
    )
    done = done_of(engine.generate(request))
    calls = parse_tool_calls(done.text)
    assert calls, done.text  # (the model calls it twice, once per unit: parallel calls are allowed)
    for call in calls:
        assert call.name == "get_weather"
        jsonschema.validate(call.arguments, tools[0].parameters)
    assert calls[0].arguments["city"] == "Oslo"
