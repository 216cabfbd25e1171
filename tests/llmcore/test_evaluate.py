from __future__ import annotations

import copy
import math

import pytest
import torch

from llmcore import evaluate
from llmcore.loading import load_model
from llmcore.pulls import DEFAULT_MODEL
from llmcore.store import ModelStore


@pytest.fixture
def tiny(store: ModelStore, tiny_model):
    return load_model(store, "tiny-llama", device="cpu")


def _direct_loss(loaded, text: str) -> tuple[float, int]:
    ids = loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    ids = torch.cat([torch.tensor([loaded.tokenizer.bos_token_id]), ids])
    with torch.no_grad():
        logits = loaded.model(input_ids=ids.unsqueeze(0)).logits[0]
    return float(torch.nn.functional.cross_entropy(logits[:-1], ids[1:])), len(ids) - 1


def test_perplexity_of_a_short_text_equals_one_forward_pass(tiny) -> None:
    text = "The quick brown fox jumps over the lazy dog. Hello world!"
    result = evaluate.perplexity(tiny, text)
    loss, tokens = _direct_loss(tiny, text)
    assert result["tokens"] == tokens
    assert result["loss"] == pytest.approx(loss, rel=1e-4)
    assert result["perplexity"] == pytest.approx(math.exp(loss), rel=1e-4)


def test_sliding_windows_score_every_token_once_within_the_context(tiny) -> None:
    text = evaluate.heldout_text()
    context = tiny.context_length  # 256 for the tiny model
    whole = evaluate.perplexity(tiny, text, max_tokens=1000)
    small = evaluate.perplexity(tiny, text, max_tokens=1000, window=64, stride=32)
    assert whole["window"] == context  # never longer than the model can see
    assert whole["tokens"] == small["tokens"] == 999  # the first token is only context
    assert math.isfinite(small["perplexity"])
    assert small["perplexity"] > 1
    # Different histories give a (slightly) different loss: the windows are really different.
    assert small["loss"] != pytest.approx(whole["loss"], rel=1e-9)


def test_perplexity_refuses_bad_windows(tiny) -> None:
    with pytest.raises(ValueError, match="stride"):
        evaluate.perplexity(tiny, "hello world", window=16, stride=32)
    with pytest.raises(ValueError, match="max_tokens"):
        evaluate.perplexity(tiny, "hello world", max_tokens=1)


def test_a_model_agrees_with_itself_and_not_with_a_perturbed_copy(tiny) -> None:
    same = evaluate.next_token_agreement(tiny, tiny)
    assert same["top1_agreement"] == 1.0
    assert same["mean_kl"] == pytest.approx(0.0, abs=1e-6)
    assert same["positions"] > len(evaluate.DEFAULT_PROMPTS)  # every position, not just the last
    other = copy.copy(tiny)
    other.model = copy.deepcopy(tiny.model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    moved = evaluate.next_token_agreement(tiny, other)
    assert 0.0 <= moved["top1_agreement"] < 1.0
    assert moved["mean_kl"] > 0.01


def test_agreement_refuses_models_with_different_tokenizers(tiny) -> None:
    other = copy.copy(tiny)
    other.tokenizer = copy.deepcopy(tiny.tokenizer)
    other.tokenizer.add_tokens(["<extra-token>"])
    with pytest.raises(ValueError, match="different tokenizers"):
        evaluate.next_token_agreement(tiny, other)


def test_the_heldout_text_ships_with_the_package_and_is_varied() -> None:
    text = evaluate.heldout_text()
    assert len(text.split()) > 1500
    assert "```python" in text  # some code
    assert '"' in text
    assert "?" in text
    assert "\n1. " in text  # a list


@pytest.mark.integration
def test_the_default_model_finds_the_heldout_text_plausible(real_model_store: ModelStore) -> None:
    loaded = load_model(real_model_store, DEFAULT_MODEL, device="cpu")
    result = evaluate.perplexity(loaded, evaluate.heldout_text())
    assert result["tokens"] > 2000
    # A 135M instruct model on plain English prose: far better than chance (vocabulary 49152), not perfect.
    assert 3 < result["perplexity"] < 100
