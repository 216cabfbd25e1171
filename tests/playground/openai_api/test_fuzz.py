"""Property-based fuzzing of /v1 (as tests/playground/test_fuzz.py does the site's own endpoints): whatever
a client sends, the answer is never a 5xx, and it is OpenAI's error object whenever it is not a 2xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import TINY_BERT, TINY_NAME
from tests.playground.openai_api.conftest import Api
from tests.playground.test_fuzz import FUZZ, JSON_VALUES, NASTY_BODIES, SCALARS, assert_not_5xx, with_keys

pytestmark = pytest.mark.django_db
FIELDS = {
    "chat/completions": ["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                         "top_k", "min_p", "repetition_penalty", "n", "seed", "stop", "stream",
                         "stream_options", "logprobs", "top_logprobs", "presence_penalty",
                         "response_format", "tools", "tool_choice"],
    "completions": ["model", "prompt", "max_tokens", "temperature", "n", "seed", "stop", "stream", "echo",
                    "logprobs", "best_of", "suffix"],
    "embeddings": ["model", "input", "encoding_format", "dimensions"],
}  # fmt: skip
SMALL = st.one_of(SCALARS, st.integers(0, 6), st.floats(0, 1), st.booleans())
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "x"])},
        optional={"content": st.one_of(st.text(max_size=30), JSON_VALUES)},
    ),
    max_size=3,
)


def bodies(path: str) -> st.SearchStrategy[str]:
    model = TINY_BERT if path == "embeddings" else TINY_NAME
    main = {"chat/completions": "messages", "completions": "prompt", "embeddings": "input"}[path]
    inputs = MESSAGES if main == "messages" else st.one_of(st.text(max_size=30), JSON_VALUES)
    plausible = st.fixed_dictionaries(
        {"model": st.just(model), main: inputs, "max_tokens": st.integers(0, 4)},
        optional={key: SMALL for key in FIELDS[path] if key not in ("model", main, "max_tokens")},
    ).map(json.dumps)
    anything = with_keys(FIELDS[path], JSON_VALUES).map(json.dumps)
    return st.one_of(plausible, plausible, anything, JSON_VALUES.map(json.dumps), NASTY_BODIES)


def read(response: Any) -> None:
    """The whole answer; an error is OpenAI's error object."""
    if response.streaming:
        b"".join(response)
        return
    if response.status_code >= 400:
        error = json.loads(response.content)["error"]
        assert isinstance(error["message"], str), error
        assert error["type"], error


@pytest.mark.parametrize("path", list(FIELDS))
def test_no_body_gets_a_5xx_from_v1(api: Api, path: str) -> None:
    @FUZZ
    @given(body=bodies(path))
    def check(body: str) -> None:
        response = api.post(path, body)
        assert_not_5xx(response, f"POST /v1/{path} {body[:200]!r}")
        read(response)

    check()
