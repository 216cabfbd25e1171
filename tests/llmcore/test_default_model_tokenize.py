"""The tokenizer lab's core on the real default model, SmolLM2-135M-Instruct."""

from __future__ import annotations

import pytest

from llmcore import tokenize as core
from llmcore.pulls import DEFAULT_MODEL
from tests.llmcore.test_tokenize import TRICKY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm2(real_model_store):
    return core.load_pretrained_tokenizer(real_model_store.path(DEFAULT_MODEL))


def test_the_default_tokenizer_gives_tricky_unicode_back_exactly(smollm2) -> None:
    result = core.tokenize(smollm2, TRICKY)
    assert result.decoded == TRICKY
    assert result.round_trip_exact
    assert result.counts.characters == len(TRICKY)
    assert any(t.byte for t in result.tokens), "emoji and rare characters are split into bytes"


@pytest.mark.parametrize(
    "text", ["", " ", "\n\n\n", "\t \t", "a" * 500, "👨‍👩‍👧" * 20, "e\u0301\u0301\u0301"]
)
def test_the_default_tokenizer_round_trips_edge_cases(smollm2, text: str) -> None:
    assert core.tokenize(smollm2, text).decoded == text


def test_the_default_pipeline_is_byte_level_bpe_without_normalizer(smollm2) -> None:
    steps = core.pipeline(smollm2, "Hello world")
    assert (steps.normalizer, steps.pre_tokenizer, steps.model) == (None, "ByteLevel", "BPE")
    assert [t.text for t in steps.tokenization.tokens] == ["Hello", "Ġworld"]
    assert [t.display for t in steps.tokenization.tokens] == ["Hello", "·world"]


def test_the_chat_template_marks_im_start_and_im_end_as_special(smollm2) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    chat = core.render_chat(smollm2, messages)
    specials = [t.text for t in chat.tokenization.tokens if t.special]
    assert specials == ["<|im_start|>", "<|im_end|>"] * 3
    assert [run for run, special in chat.segments if special] == specials
    assert chat.text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert chat.tokenization.round_trip_exact


def test_the_default_model_rotates_64_dims_per_head_with_base_100000(real_model_store) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(real_model_store.path(DEFAULT_MODEL), local_files_only=True)
    (rope,) = core.rope_of(config)
    assert (rope.base, rope.rotary_dim, len(rope.frequencies)) == (100000.0, 64, 32)
    assert rope.frequencies[-1] == pytest.approx(100000.0 ** (-62 / 64))
