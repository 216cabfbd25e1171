"""Attention capture on the tiny random-weight Llama (causal, grouped-query) and a tiny random BERT."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from llmcore.attention import (
    AttentionCapture,
    AttentionInputError,
    CaptureCache,
    capture_attention,
    kv_head_of,
    pool_overview,
    prepare_input,
)
from llmcore.loading import LoadedModel, load_model
from tests.conftest import TINY_BERT

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "The quick brown fox jumps over the lazy dog."
FP16_ROW_TOLERANCE = 2e-3  # a row of float16 values sums to 1 within a few float16 steps


@pytest.fixture
def llama(store, tiny_model) -> LoadedModel:
    return load_model(store, "tiny-llama", device="cpu")


def capture(loaded: LoadedModel, text: str = SENTENCE, as_chat: bool = False) -> AttentionCapture:
    inp = prepare_input(loaded.tokenizer, text, as_chat=as_chat, max_tokens=1024, model_name=loaded.name)
    return capture_attention(loaded.model, inp, model_name=loaded.name, is_causal=loaded.is_causal)


def decode(blob: bytes, n: int) -> torch.Tensor:
    return torch.frombuffer(bytearray(blob), dtype=torch.float16).reshape(n, n).float()


# --- what every attention map must be ------------------------------------------------------------------
def test_every_row_of_every_head_sums_to_one(llama: LoadedModel) -> None:
    cap = capture(llama)
    assert cap.num_layers == 2
    assert cap.num_heads == 4
    for layer in cap.layers:
        assert layer.dtype == torch.float16
        assert layer.shape == (4, cap.num_tokens, cap.num_tokens)
        sums = layer.float().sum(dim=-1)  # (H, T)
        assert torch.allclose(sums, torch.ones_like(sums), atol=FP16_ROW_TOLERANCE)


def test_a_causal_model_never_looks_at_later_tokens(llama: LoadedModel) -> None:
    cap = capture(llama)
    upper = torch.triu(torch.ones(cap.num_tokens, cap.num_tokens, dtype=torch.bool), diagonal=1)
    for layer in cap.layers:
        assert (layer[:, upper] == 0).all()
        assert (layer[:, ~upper] > 0).all()  # random weights spread attention over every earlier token
    assert cap.is_causal


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def test_captured_weights_match_a_recomputation_from_queries_and_keys(llama: LoadedModel) -> None:
    """softmax(Q K^T / sqrt(d) + causal mask) from each layer's own projections, RoPE applied here."""
    model = llama.model
    ids = llama.tokenizer(SENTENCE, return_tensors="pt").input_ids  # (1, T)
    inputs: list[torch.Tensor] = []  # each layer's normed hidden states, as q_proj sees them
    hooks = [
        layer.self_attn.q_proj.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach()))
        for layer in model.model.layers
    ]
    with torch.no_grad():
        model(ids)  # the shared model's own (sdpa) forward pass, not the capture's
    for hook in hooks:
        hook.remove()

    cfg = model.config
    heads, kv, d = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.hidden_size // cfg.num_attention_heads,
    )
    T = ids.shape[1]
    cap = capture(llama)
    assert cap.token_ids == ids[0].tolist()
    positions = torch.arange(T)[None]
    for index, (layer, x) in enumerate(zip(model.model.layers, inputs, strict=True)):
        attn = layer.self_attn
        with torch.no_grad():
            q = attn.q_proj(x).view(1, T, heads, d).transpose(1, 2)  # (1, H, T, d)
            k = attn.k_proj(x).view(1, T, kv, d).transpose(1, 2)  # (1, KV, T, d)
            cos, sin = model.model.rotary_emb(x, positions)  # (1, T, d)
            cos, sin = cos[:, None], sin[:, None]
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            k = k[:, [h // (heads // kv) for h in range(heads)]]  # grouped-query: (1, H, T, d)
            scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (1, H, T, T)
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            expected = scores.softmax(dim=-1)[0]
        assert torch.allclose(cap.layers[index].float(), expected, atol=1e-3), f"layer {index} differs"


def test_grouped_query_heads_are_mapped_to_the_key_value_head_they_read(llama: LoadedModel) -> None:
    assert kv_head_of(4, 2) == [0, 0, 1, 1]
    assert kv_head_of(9, 3) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # the default model
    assert kv_head_of(12, 12) == list(range(12))  # no grouping: every head has its own
    with pytest.raises(ValueError):
        kv_head_of(9, 2)
    cap = capture(llama)
    assert (cap.num_heads, cap.num_kv_heads, cap.kv_head_of) == (4, 2, [0, 0, 1, 1])


def test_an_encoder_attends_in_both_directions(store, tiny_bert) -> None:
    bert = load_model(store, TINY_BERT, device="cpu")
    assert not bert.is_causal
    cap = capture(bert)
    assert not cap.is_causal
    assert cap.tokens[0] == "[CLS]"
    assert cap.tokens[-1] == "[SEP]"
    upper = torch.triu(torch.ones(cap.num_tokens, cap.num_tokens, dtype=torch.bool), diagonal=1)
    for layer in cap.layers:
        assert (layer[:, upper] > 0).all()  # the first token sees the last one, and every other
        sums = layer.float().sum(dim=-1)
        assert torch.allclose(sums, torch.ones_like(sums), atol=FP16_ROW_TOLERANCE)
    assert cap.kv_head_of == [0, 1, 2, 3]


# --- the shared model stays as it was ------------------------------------------------------------------
def test_the_shared_model_keeps_its_own_attention_and_its_outputs(llama: LoadedModel) -> None:
    model = llama.model
    before = model.config._attn_implementation
    ids = llama.tokenizer(SENTENCE, return_tensors="pt").input_ids
    with torch.no_grad():
        reference = model(ids).logits
    capture(llama)
    assert model.config._attn_implementation == before
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference)


def test_captures_running_beside_ordinary_forward_passes_stay_correct(llama: LoadedModel) -> None:
    model = llama.model
    ids = llama.tokenizer(SENTENCE * 3, return_tensors="pt").input_ids
    with torch.no_grad():
        reference = model(ids).logits
    expected = capture(llama).layers[1]
    problems: list[str] = []

    def forward_passes() -> None:
        for _ in range(10):
            with torch.no_grad():
                if not torch.allclose(model(ids).logits, reference, atol=1e-5):
                    problems.append("an ordinary forward pass changed while a capture ran")

    def captures() -> None:
        for _ in range(4):
            if not torch.equal(capture(llama).layers[1], expected):
                problems.append("two captures of the same text differ")

    threads = [threading.Thread(target=f) for f in (forward_passes, captures, captures)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []


# --- input and limits ------------------------------------------------------------------------------------
def test_one_sequence_is_captured_as_tokenized_without_padding(llama: LoadedModel) -> None:
    ids = llama.tokenizer(SENTENCE).input_ids
    cap = capture(llama)
    assert cap.token_ids == ids
    assert llama.tokenizer.pad_token_id not in cap.token_ids
    assert len(cap.tokens) == cap.num_tokens == len(ids)
    # The labels read back as the text, with each token's leading space made visible.
    assert "".join(cap.tokens) == SENTENCE.replace(" ", "·")


def test_text_over_the_token_limit_is_refused_with_a_clear_message(llama: LoadedModel) -> None:
    text = SENTENCE * 3
    n = len(llama.tokenizer(text).input_ids)
    message = rf"The text is {n} tokens for tiny; the limit is {n - 1} tokens. Shorten it"
    with pytest.raises(AttentionInputError, match=message):
        prepare_input(llama.tokenizer, text, as_chat=False, max_tokens=n - 1, model_name="tiny")
    assert len(prepare_input(llama.tokenizer, text, as_chat=False, max_tokens=n).token_ids) == n


def test_the_model_context_length_caps_the_limit(llama: LoadedModel) -> None:
    with pytest.raises(AttentionInputError, match="tiny reads at most 16 tokens"):
        prepare_input(
            llama.tokenizer,
            "word " * 20,
            as_chat=False,
            max_tokens=1024,
            context_length=16,
            model_name="tiny",
        )


def test_blank_text_is_refused(llama: LoadedModel) -> None:
    with pytest.raises(AttentionInputError, match="Type some text"):
        prepare_input(llama.tokenizer, "  \n ", as_chat=False, max_tokens=1024)


def test_as_chat_wraps_the_text_in_the_chat_template(llama: LoadedModel) -> None:
    inp = prepare_input(llama.tokenizer, "Hello world", as_chat=True, max_tokens=1024)
    assert inp.as_chat
    text = "".join(inp.tokens)
    assert text == "<|im_start|>user↵Hello·world<|im_end|>↵<|im_start|>assistant↵"
    plain = prepare_input(llama.tokenizer, "Hello world", as_chat=False, max_tokens=1024)
    assert "".join(plain.tokens) == "Hello·world"


def test_as_chat_on_a_model_without_a_template_reads_the_text_and_says_so(store, tiny_bert) -> None:
    bert = load_model(store, TINY_BERT, device="cpu")
    inp = prepare_input(bert.tokenizer, SENTENCE, as_chat=True, max_tokens=1024, model_name=TINY_BERT)
    assert not inp.as_chat
    assert inp.notes == ["tiny-bert has no chat template, so it read the text as is."]


# --- the pieces a page draws ------------------------------------------------------------------------------
def test_the_overview_keeps_the_peak_of_each_bin_on_a_square_root_scale() -> None:
    layer = torch.zeros(1, 128, 128, dtype=torch.float16)
    layer[0, 5, 7] = 0.25  # one strong weight in the first 2x2 bin
    layer[0, 127, 0] = 1.0
    overview = pool_overview([layer], size=64)
    assert overview.shape == (1, 1, 64, 64)
    assert overview.dtype == torch.uint8
    assert overview[0, 0, 2, 3] == 128  # round(255 * sqrt(0.25)) = 127.5 -> 128
    assert overview[0, 0, 63, 0] == 255
    assert int(overview.sum()) == 128 + 255
    assert pool_overview([layer[:, :10, :10]]).shape == (1, 1, 10, 10)  # never upsampled
    assert pool_overview([layer[:, :100, :100]]).shape == (1, 1, 50, 50)  # bins of 2 tokens


def test_overview_bins_wholly_in_the_future_are_empty_and_the_others_are_not(llama: LoadedModel) -> None:
    """attention.js hatches overview bin (a, b) when b * bin >= min((a + 1) * bin, T): those must be empty."""
    inp = prepare_input(llama.tokenizer, SENTENCE * 4, as_chat=False, max_tokens=1024)
    cap = capture_attention(llama.model, inp, model_name="tiny", is_causal=True, overview_size=8)
    T, size = cap.num_tokens, cap.overview_bin
    assert size == math.ceil(T / 8) > 1
    side = cap.overview.shape[-1]
    assert side == math.ceil(T / size)
    for a in range(side):
        for b in range(side):
            masked = b * size >= min((a + 1) * size, T)
            assert (cap.overview[:, :, a, b] == 0).all() if masked else (cap.overview[:, :, a, b] > 0).all()


def test_head_and_mean_bytes_decode_to_float16_rows_summing_to_one(llama: LoadedModel) -> None:
    cap = capture(llama)
    n = cap.num_tokens
    head = decode(cap.head_bytes(1, 3), n)
    assert torch.equal(head, cap.layers[1][3].float())
    mean = decode(cap.mean_bytes(0), n)
    assert torch.allclose(mean.sum(dim=-1), torch.ones(n), atol=FP16_ROW_TOLERANCE)
    assert len(cap.overview_bytes()) == 2 * 4 * n * n  # n < 64: one bin per token pair
    with pytest.raises(IndexError, match="Head 4 does not exist"):
        cap.head_bytes(0, 4)


def test_the_cache_keeps_the_most_recent_captures_within_its_budget(llama: LoadedModel) -> None:
    caps = [capture(llama) for _ in range(3)]
    cache = CaptureCache(max_captures=2, max_bytes=10**9)
    for cap in caps:
        cache.put(cap, owner=1)
    assert cache.get(caps[0].capture_id, owner=1) is None  # least recently used, evicted
    assert cache.get(caps[2].capture_id, owner=1) is caps[2]
    assert cache.get(caps[2].capture_id, owner=2) is None  # someone else's capture is not there for them
    small = CaptureCache(max_captures=10, max_bytes=caps[0].nbytes + 1)
    for cap in caps:
        small.put(cap, owner=1)
    assert len(small) == 1
    assert small.get(caps[2].capture_id, owner=1) is caps[2]


def test_the_attention_module_never_imports_the_web_framework() -> None:
    code = (
        "import sys, llmcore.attention; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
