"""Schemas and tools the structured-output tests share: a few for the real default model (the llmcore
integration test and the end-to-end test through the openai SDK ask the same), and small ones the tiny
random model finishes well inside its 256 positions."""

from __future__ import annotations

# Questions for the real model, each with the schema its answer must validate against. Every string and
# number is bounded: greedy decoding of a small model may repeat a digit for as long as it may.
QUESTIONS = {
    "Describe the city of Paris.": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "country": {"type": "string", "maxLength": 40},
            "population": {"type": "integer", "minimum": 0, "maximum": 100_000_000},
        },
        "required": ["city", "country", "population"],
        "additionalProperties": False,
    },
    "Name three primary colours.": {
        "type": "object",
        "properties": {
            "colours": {
                "type": "array",
                "items": {"enum": ["red", "yellow", "blue", "green"]},
                "minItems": 3,
                "maxItems": 3,
            }
        },
        "required": ["colours"],
        "additionalProperties": False,
    },
    "Is the sky blue? Answer with a confidence.": {
        "type": "object",
        "properties": {
            "answer": {"type": "boolean"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "reason": {
                "type": "object",
                "properties": {"short": {"type": "string", "maxLength": 60}},
                "required": ["short"],
                "additionalProperties": False,
            },
        },
        "required": ["answer", "confidence", "reason"],
        "additionalProperties": False,
    },
}
REAL_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}

# For the tiny model: two tools whose calls are short.
TINY_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"enum": ["Paris", "Oslo"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "now",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}
