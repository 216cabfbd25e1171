"""The attention of one generated step (the last query row of every layer and head), on the tiny
random-weight Llama and once on the real default model."""

from __future__ import annotations

import pytest
import torch

from llmcore.attention import AttentionInputError, capture_attention, prepare_input
from llmcore.inspect_token import StepAttention, last_query_attention, step_context
from llmcore.loading import LoadedModel, load_model

SENTENCE = "The quick brown fox jumps over the lazy dog."
FP16_ROW_TOLERANCE = 2e-3  # a row of float16 values sums to 1 within a few float16 steps


@pytest.fixture
def llama(store, tiny_model) -> LoadedModel:
    return load_model(store, "tiny-llama", device="cpu")


def ids_of(loaded: LoadedModel, text: str = SENTENCE) -> list[int]:
    return list(loaded.tokenizer(text)["input_ids"])


def assert_rows_sum_to_one(step: StepAttention) -> None:
    sums = step.weights.float().sum(dim=-1)  # (L, H)
    assert torch.allclose(sums, torch.ones_like(sums), atol=FP16_ROW_TOLERANCE), sums


def test_every_layer_and_head_gives_one_row_over_the_context(llama: LoadedModel) -> None:
    ids = ids_of(llama)
    step = last_query_attention(llama, ids, max_tokens=1024)
    assert step.weights.shape == (2, 4, len(ids))
    assert step.weights.dtype == torch.float16
    assert (step.num_layers, step.num_heads, step.num_tokens, step.num_kv_heads) == (2, 4, len(ids), 2)
    assert_rows_sum_to_one(step)
    rows = step.rows()
    assert len(rows) == 2
    assert all(len(layer) == 4 for layer in rows)
    assert all(len(row) == len(ids) for layer in rows for row in layer)
    assert all(abs(sum(row) - 1) < 5e-3 for layer in rows for row in layer)
    assert all(len(repr(x).split(".")[-1]) <= 4 for layer in rows for row in layer for x in row)


def test_the_row_is_the_attention_maps_row_of_that_position(llama: LoadedModel) -> None:
    """Causal: tokens after the query change nothing, and the full map has zeros past it."""
    ids = ids_of(llama)
    query = len(ids) // 2
    step = last_query_attention(llama, ids[: query + 1], max_tokens=1024)
    inp = prepare_input(llama.tokenizer, SENTENCE, as_chat=False, max_tokens=1024)
    assert inp.token_ids == ids
    full = capture_attention(llama.model, inp, model_name=llama.name, is_causal=True)
    for layer in range(full.num_layers):
        row = full.layers[layer][:, query, :]  # (H, T)
        assert (row[:, query + 1 :] == 0).all()
        assert torch.allclose(step.weights[layer].float(), row[:, : query + 1].float(), atol=2e-3)


def test_a_head_attends_differently_when_the_context_changes(llama: LoadedModel) -> None:
    ids = ids_of(llama)
    changed = ids_of(llama, "A slow green turtle walks under the busy dog.")
    n = min(len(ids), len(changed))
    first = last_query_attention(llama, ids[:n], max_tokens=1024)
    second = last_query_attention(llama, changed[:n], max_tokens=1024)
    assert first.weights.shape == second.weights.shape
    assert not torch.allclose(first.weights.float(), second.weights.float(), atol=1e-3)


def test_a_context_over_the_limit_is_refused_with_a_reason(llama: LoadedModel) -> None:
    ids = ids_of(llama)
    with pytest.raises(AttentionInputError, match="at most 5 tokens"):
        last_query_attention(llama, ids[:6], max_tokens=5)
    with pytest.raises(AttentionInputError, match="reads at most 256 tokens"):
        last_query_attention(llama, ids * 30, max_tokens=10_000)
    with pytest.raises(AttentionInputError, match="no context"):
        last_query_attention(llama, [], max_tokens=10)
    with pytest.raises(AttentionInputError, match="not in tiny-llama's vocabulary"):
        last_query_attention(llama, [*ids[:3], 10**6], max_tokens=10)


def test_a_step_reads_the_prompt_and_the_tokens_before_it() -> None:
    assert step_context([1, 2], [7, 8, 9], 0) == [1, 2]
    assert step_context([1, 2], [7, 8, 9], 2) == [1, 2, 7, 8]
    with pytest.raises(IndexError, match="tokens 0-2"):
        step_context([1, 2], [7, 8, 9], 3)
    with pytest.raises(IndexError, match="no generated tokens"):
        step_context([1, 2], [], 0)


@pytest.mark.integration
def test_the_default_model_gives_30_layers_of_9_heads(real_model_store) -> None:
    from llmcore.pulls import DEFAULT_MODEL

    loaded = load_model(real_model_store, DEFAULT_MODEL, device="cpu")
    ids = list(loaded.tokenizer(SENTENCE)["input_ids"])
    step = last_query_attention(loaded, ids, max_tokens=1024)
    assert step.weights.shape == (30, 9, len(ids))
    assert step.num_kv_heads == 3
    assert_rows_sum_to_one(step)
    # A trained model's heads do not all look alike, unlike a uniform spread over the context.
    flat = step.weights.float().reshape(-1, len(ids))
    assert flat.std(dim=0).max() > 0.05
