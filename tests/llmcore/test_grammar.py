"""Structured output on the tiny random-weight model: whatever its random logits prefer, the grammar's mask
leaves it only tokens that keep the answer valid, so every answer parses and validates."""

from __future__ import annotations

import json

import jsonschema
import pytest

from llmcore.engine import DoneEvent, GenerationRequest, SpeculativeConfig, StatsEvent, TokenEvent
from llmcore.grammar import GrammarError, grammars_for, json_object, json_schema
from llmcore.sampling import SamplingConfig
from llmcore.tools import parse_tool_calls, parse_tools, tool_constraint
from tests.schemas import CLOCK, TINY_WEATHER

RANDOM = SamplingConfig(temperature=1.0)
GREEDY = SamplingConfig(temperature=0)

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "member": {"type": "boolean"},
    },
    "required": ["name", "age", "member"],
    "additionalProperties": False,
}
COLOUR = {
    "type": "object",
    "properties": {"colour": {"enum": ["red", "green", "blue"]}, "shade": {"const": "dark"}},
    "required": ["colour", "shade"],
    "additionalProperties": False,
}
GRID = {  # nested arrays of bounded size
    "type": "object",
    "properties": {
        "rows": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {"type": "integer", "minimum": -9, "maximum": 9},
            },
        }
    },
    "required": ["rows"],
    "additionalProperties": False,
}
CHOICE = {"enum": ["yes", "no", 3, None]}  # not an object: any JSON value a schema allows


def ask(loaded, **kw) -> GenerationRequest:
    kw.setdefault("prompt_ids", list(loaded.tokenizer.encode("Answer in JSON:")))
    kw.setdefault("sampling", RANDOM)
    kw.setdefault("max_new_tokens", 200)
    return GenerationRequest(**kw)


def answer(events) -> tuple[DoneEvent, StatsEvent, list[TokenEvent]]:
    done = events[-1]
    assert isinstance(done, DoneEvent)
    stats = next(e for e in events if isinstance(e, StatsEvent))
    return done, stats, [e for e in events if isinstance(e, TokenEvent)]


@pytest.mark.parametrize("schema", [PERSON, COLOUR, GRID, CHOICE], ids=["person", "enum", "grid", "value"])
def test_random_weights_under_a_schema_write_json_that_validates(engine, loaded, schema) -> None:
    for seed in range(4):
        done, stats, _ = answer(engine.generate(ask(loaded, constraint=json_schema(schema), seed=seed)))
        assert done.reason == "stop", done  # the grammar completed, well inside max_new_tokens
        jsonschema.validate(json.loads(done.text), schema)
        assert stats.provenance["constraint"]["schema"] == schema


def test_without_the_grammar_the_same_model_writes_no_json(engine, loaded) -> None:
    done, _, _ = answer(engine.generate(ask(loaded, seed=0, max_new_tokens=30, ignore_stop_tokens=True)))
    with pytest.raises(ValueError):
        json.loads(done.text)


def test_greedy_and_best_of_follow_the_grammar_too(engine, loaded) -> None:
    done, _, _ = answer(engine.generate(ask(loaded, constraint=json_schema(PERSON), sampling=GREEDY)))
    jsonschema.validate(json.loads(done.text), PERSON)
    done, _, _ = answer(engine.generate(ask(loaded, constraint=json_schema(COLOUR), best_of=3, seed=5)))
    assert len(done.candidates) == 3
    for candidate in done.candidates:  # each candidate had its own grammar state
        jsonschema.validate(json.loads(candidate.text), COLOUR)


def test_top_k_and_top_p_only_ever_see_allowed_tokens(engine, loaded) -> None:
    # top-k 1 on the unmasked logits would keep a token the grammar forbids and leave nothing to draw
    tight = SamplingConfig(temperature=0.7, top_k=1, top_p=0.5)
    done, _, tokens = answer(engine.generate(ask(loaded, constraint=json_schema(COLOUR), sampling=tight)))
    assert done.reason == "stop", done.error  # a mask after top-k would have left nothing to draw
    jsonschema.validate(json.loads(done.text), COLOUR)
    assert all(a.prob > 0 for t in tokens for a in t.alternatives)  # alternatives are allowed tokens


def test_end_of_turn_is_allowed_only_where_the_answer_is_complete(loaded) -> None:
    grammars = grammars_for(loaded.tokenizer, len(loaded.tokenizer), loaded.stop_token_ids)
    state = grammars.state(json_schema({"type": "integer"}))
    eos = loaded.stop_token_ids[0]
    assert not state.allowed()[eos]  # nothing written yet: an empty answer is not an integer
    for token in loaded.tokenizer.encode("42"):
        state.advance(token)
    assert state.accepting
    assert not state.done
    assert state.allowed()[eos]
    state = grammars.state(json_schema(COLOUR))
    text = '{"colour": "red", "shade": "dark"'
    for token in loaded.tokenizer.encode(text):
        assert not state.allowed()[eos]
        assert not state.advance(token)
    assert not state.accepting
    assert state.advance(loaded.tokenizer.encode("}")[0])  # the object closed: nothing more can follow
    assert state.done
    assert state.allowed()[eos]
    assert int(state.allowed().sum()) == len(loaded.stop_token_ids)


def test_a_batch_of_differently_constrained_sequences_each_keeps_its_own_grammar(engine, loaded) -> None:
    schemas = [PERSON, COLOUR, GRID, None]
    streams = [
        engine.submit(
            ask(loaded, constraint=json_schema(s) if s else None, seed=i, ignore_stop_tokens=s is None)
        )
        for i, s in enumerate(schemas)
    ]
    results = [answer(s.events()) for s in streams]
    for schema, (done, _, _) in zip(schemas, results, strict=True):
        if schema is not None:
            jsonschema.validate(json.loads(done.text), schema)
    assert max(stats.batch_size_max for _, stats, _ in results) > 1  # they did share decode passes
    assert results[3][0].reason == "length"  # the unconstrained one was not cut short by the others'


def test_any_json_object(engine, loaded) -> None:
    for seed in range(3):
        done, _, _ = answer(
            engine.generate(ask(loaded, constraint=json_object(), seed=seed, max_new_tokens=60))
        )
        if done.reason == "stop":  # a random model may write a long object: then it is cut, not wrong
            assert isinstance(json.loads(done.text), dict)
        else:
            assert done.text.startswith("{")


def test_a_schema_the_library_cannot_enforce_is_refused_naming_the_problem() -> None:
    with pytest.raises(GrammarError, match="not valid JSON"):
        json_schema('{"type": "object",')
    with pytest.raises(GrammarError, match="JSON object"):
        json_schema("[1, 2]")
    with pytest.raises(GrammarError, match="format"):
        json_schema({"type": "string", "format": "no-such-format"})
    lenient = json_schema({"type": "string", "format": "no-such-format"}, strict=False)
    assert lenient.warnings or not lenient.strict  # not strict: enforced without the unknown format


def test_a_grammar_refuses_speculative_decoding_and_beams(loaded) -> None:
    prompt = [1, 2, 3]
    with pytest.raises(GrammarError, match="speculative"):
        GenerationRequest(
            prompt_ids=prompt, constraint=json_object(), speculative=SpeculativeConfig(method="prompt_lookup")
        )
    with pytest.raises(GrammarError, match="beam"):
        GenerationRequest(prompt_ids=prompt, constraint=json_object(), num_beams=2)


def test_a_required_tool_call_names_a_tool_and_its_arguments_validate(engine, loaded) -> None:
    tools = parse_tools([TINY_WEATHER, CLOCK])
    for seed, choice in enumerate(["required", {"type": "function", "function": {"name": "get_weather"}}]):
        constraint = tool_constraint(tools, choice, parallel=False)
        done, _, _ = answer(engine.generate(ask(loaded, constraint=constraint, seed=seed)))
        calls = parse_tool_calls(done.text)
        assert len(calls) == 1, done.text
        if choice != "required":
            assert calls[0].name == "get_weather"
        schema = next(t.parameters for t in tools if t.name == calls[0].name)
        jsonschema.validate(calls[0].arguments, schema)


def test_tools_are_refused_in_words() -> None:
    with pytest.raises(GrammarError, match="name"):
        parse_tools([{"type": "function", "function": {"name": "no spaces"}}])
    with pytest.raises(GrammarError, match="Two tools"):
        parse_tools([CLOCK, CLOCK])
    with pytest.raises(GrammarError, match="parameters of tool bad"):
        parse_tools([{"type": "function", "function": {"name": "bad", "parameters": {"type": "nope"}}}])
    with pytest.raises(GrammarError, match="not among the tools"):
        tool_constraint(parse_tools([CLOCK]), {"type": "function", "function": {"name": "missing"}})
    assert tool_constraint(parse_tools([CLOCK]), "none") is None


def test_calls_written_back_into_a_conversation_parse_as_the_same_calls() -> None:
    from llmcore.tools import ToolCall, calls_text

    calls = [ToolCall("get_weather", {"city": "Oslo", "days": 2}), ToolCall("now", {})]
    assert parse_tool_calls(calls_text(calls)) == calls
    assert parse_tool_calls("Just words, no call.") == []


def test_with_tool_choice_auto_an_answer_is_words_or_a_whole_call(engine, loaded) -> None:
    tools = parse_tools([TINY_WEATHER])
    constraint = tool_constraint(tools, "auto")
    for seed in range(4):
        request = ask(loaded, constraint=constraint, seed=seed, max_new_tokens=60)
        done, _, _ = answer(engine.generate(request))
        if done.text.startswith("<"):  # it began a call: then the call is whole and valid
            assert done.reason == "stop"
            (call,) = parse_tool_calls(done.text)
            jsonschema.validate(call.arguments, tools[0].parameters)
        else:
            assert parse_tool_calls(done.text) == []


def test_tool_turns_become_plain_turns_for_a_template_without_tools() -> None:
    from llmcore.tools import plain_messages

    call = {"type": "function", "function": {"name": "now", "arguments": {}}}
    turns = plain_messages(
        [
            {"role": "user", "content": "Time?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "12:00"},
        ]
    )
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert parse_tool_calls(turns[1]["content"])[0].name == "now"
    assert turns[2]["content"] == "<tool_response>\n12:00\n</tool_response>"
