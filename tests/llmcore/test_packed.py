"""Packed 4-bit decode (llmcore.packed): exact grids only, the loaded model untouched, close to float32."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from llmcore.engine import Engine, GenerationRequest, StatsEvent, TokenEvent
from llmcore.loading import load_model
from llmcore.packed import (
    DENSE_ROWS,
    GROUP_SIZE,
    Float16Head,
    PackedInt4Linear,
    on_grid,
    pack_for_decode,
)
from llmcore.sampling import SamplingConfig


def snap(weight: torch.Tensor) -> torch.Tensor:
    """`weight` moved onto a Q4_1 grid as llama.cpp writes one: per group of 32, a float16 step d and
    minimum m, codes 0..15, each weight d * q + m (float32, as a GGUF import dequantizes it)."""
    n, k = weight.shape
    groups = weight.float().view(n, k // GROUP_SIZE, GROUP_SIZE)
    low = groups.amin(-1).half().float()
    step = ((groups.amax(-1) - low) / 15).half().float()
    codes = torch.round((groups - low[..., None]) / step[..., None]).clamp(0, 15)
    return (codes * step[..., None] + low[..., None]).view(n, k)


def snap_layers(model: nn.Module, only: str = "") -> int:
    """Snap every decoder-layer Linear whose name contains `only`; how many were snapped."""
    count = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if type(module) is nn.Linear and ".layers." in name and only in name:
                module.weight.copy_(snap(module.weight))
                count += 1
    return count


@pytest.fixture
def loaded(store, tiny_model):
    return load_model(store, "tiny-llama", device="cpu")


@pytest.fixture
def snapped(loaded):
    """The tiny model with every decoder linear layer on a 4-bit grid, as if imported from a Q4_1 GGUF."""
    assert snap_layers(loaded.model) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    return loaded


def ids(loaded, text: str = "Hello world, this is a test of packed weights.") -> torch.Tensor:
    return torch.tensor([loaded.tokenizer.encode(text)])


def logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(tokens).logits[0].float()


def test_on_grid_reads_codes_scales_and_zero_points_back() -> None:
    weight = snap(torch.randn(64, 96, generator=torch.Generator().manual_seed(1)))
    grid = on_grid(weight)
    assert grid is not None
    codes, scales, zeros = grid
    assert codes.dtype == torch.int32
    assert int(codes.min()) == 0
    assert int(codes.max()) == 15
    assert scales.shape == zeros.shape == (64, 96 // GROUP_SIZE)
    rebuilt = (codes.float().view(64, -1, GROUP_SIZE) - 8) * scales[..., None] + zeros[..., None]
    torch.testing.assert_close(rebuilt.view(64, 96), weight, rtol=0, atol=1e-6)


def test_weights_off_a_grid_are_not_packed() -> None:
    weight = torch.randn(64, 96, generator=torch.Generator().manual_seed(2))
    assert on_grid(weight) is None  # plain float weights
    nearly = snap(weight)
    nearly[3, 5] += 0.3 * (nearly[3, :32].max() - nearly[3, :32].min()) / 15  # one weight off by 0.3 step
    assert on_grid(nearly) is None
    assert on_grid(snap(weight)[:, :48]) is None  # 48 columns: not whole groups of 32


def grid_linear(
    gen: torch.Generator, bias: bool
) -> tuple[nn.Linear, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """A 128 -> 96 layer whose weights lie on a Q4_1 grid, and that grid."""
    linear = nn.Linear(128, 96, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(snap(torch.randn(96, 128, generator=gen) * 0.05))
    grid = on_grid(linear.weight)
    assert grid is not None
    return linear, grid


def test_packed_linear_computes_what_the_float_layer_does() -> None:
    gen = torch.Generator().manual_seed(3)
    linear, grid = grid_linear(gen, bias=True)
    packed = PackedInt4Linear(linear, *grid)
    x = torch.randn(2, 5, 128, generator=gen)
    with torch.inference_mode():
        want, got = linear(x), packed(x)
    assert got.shape == want.shape == (2, 5, 96)
    assert got.dtype == torch.float32
    # bfloat16 layer inputs and scales: about 3 significant digits
    assert float((got - want).norm() / want.norm()) < 1e-2
    assert not torch.equal(got, want)  # it really ran the packed kernel


def test_many_rows_use_the_bfloat16_copy_of_the_same_weights() -> None:
    gen = torch.Generator().manual_seed(4)
    linear, grid = grid_linear(gen, bias=False)
    plain, dense = PackedInt4Linear(linear, *grid), PackedInt4Linear(linear, *grid, dense=True)
    assert plain.dense is None
    assert dense.dense is not None
    assert dense.dense.dtype == torch.bfloat16
    # the copy holds the grid's weights as the kernel rebuilds them: off by the step's bfloat16 rounding
    # (at most 8 codes x 2^-9 of a step) and its own (at most 2^-8 of the weight), here with a margin of 2
    steps = grid[1].repeat_interleave(GROUP_SIZE, dim=1)
    bound = steps / 32 + linear.weight.abs() / 128
    assert bool(((dense.dense.float() - linear.weight).abs() <= bound + 1e-9).all())
    few = torch.randn(DENSE_ROWS - 1, 128, generator=gen)
    many = torch.randn(DENSE_ROWS, 128, generator=gen)
    with torch.inference_mode():
        assert torch.equal(dense(few), plain(few))  # below the threshold: the int4 kernel
        got, kernel, want = dense(many), plain(many), linear(many)
        by_copy = nn.functional.linear(many.bfloat16(), dense.dense).float()
    assert torch.equal(got, by_copy)  # at the threshold: the bfloat16 product
    assert not torch.equal(got, kernel)
    assert float((got - want).norm() / want.norm()) < 1e-2
    assert float((got - kernel).norm() / want.norm()) < 1e-2


def test_float16_head_falls_back_to_float32_when_it_overflows() -> None:
    head = nn.Linear(64, 10, bias=False)
    with torch.no_grad():
        head.weight.fill_(1.0)
    fast = Float16Head(head)
    small = torch.full((1, 64), 0.5)
    torch.testing.assert_close(fast(small), head(small), rtol=1e-3, atol=1e-3)
    huge = torch.full((1, 64), 60_000.0)  # each logit 3.8e6: inf in float16
    out = fast(huge)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, head(huge))


def test_pack_for_decode_packs_a_4bit_model_and_leaves_the_loaded_one_alone(snapped) -> None:
    tokens = ids(snapped)
    before = logits(snapped.model, tokens)
    fast, info = pack_for_decode(snapped.model)
    assert fast is not snapped.model
    assert (info.kind, info.packed_layers, info.linear_layers, info.head) == (
        "int4-packed",
        14,
        14,
        "float16 (one row), bfloat16 (more rows)",
    )
    assert info.extra_bytes > 0
    assert info.label == "4-bit packed (14 of 14 layers)"
    layer = fast.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, PackedInt4Linear)
    assert isinstance(layer.mlp.down_proj, PackedInt4Linear)
    assert isinstance(fast.lm_head, Float16Head)
    # the loaded model, which the attention and lens pages keep using, is unchanged and shares its tensors
    assert type(snapped.model.model.layers[0].self_attn.q_proj) is nn.Linear
    assert type(snapped.model.lm_head) is nn.Linear
    assert fast.model.embed_tokens.weight is snapped.model.model.embed_tokens.weight
    assert fast.model.norm.weight is snapped.model.model.norm.weight
    assert torch.equal(logits(snapped.model, tokens), before)

    after = logits(fast, tokens)
    p, q = torch.log_softmax(before, -1), torch.log_softmax(after, -1)
    kl = float((p.exp() * (p - q)).sum(-1).mean())
    assert kl < 1e-3
    assert float((after - before).abs().max()) < 0.05 * float(before.abs().max())
    assert not torch.equal(after, before)


def test_only_layers_on_a_grid_are_packed(loaded) -> None:
    assert snap_layers(loaded.model, only=".mlp.") == 6
    fast, info = pack_for_decode(loaded.model)
    assert (info.kind, info.packed_layers, info.linear_layers) == ("int4-packed", 6, 14)
    layer = fast.model.layers[1]
    assert isinstance(layer.mlp.up_proj, PackedInt4Linear)
    assert type(layer.self_attn.v_proj) is nn.Linear
    # the module is the copy's own; its weight is the loaded model's tensor, not a copy of it
    assert layer.self_attn.v_proj.weight is loaded.model.model.layers[1].self_attn.v_proj.weight


def test_models_that_are_not_packed_are_returned_as_they_are(loaded) -> None:
    fast, info = pack_for_decode(loaded.model)  # random float weights: no grid
    assert fast is loaded.model
    assert info.kind == "float"
    assert info.linear_layers == 14
    assert "grid" in info.reason
    snap_layers(loaded.model)
    fast, info = pack_for_decode(loaded.model, "off")
    assert fast is loaded.model
    assert info.kind == "float"
    assert "off" in info.reason
    bf16 = dataclasses.replace(loaded, model=loaded.model.to(torch.bfloat16))
    fast, info = pack_for_decode(bf16.model)
    assert fast is bf16.model
    assert info.kind == "float"
    assert "float32" in info.reason
    with pytest.raises(ValueError, match="auto, off"):
        pack_for_decode(loaded.model, "fast")


def test_engine_runs_the_packed_copy_and_says_so(snapped) -> None:
    prompt = list(snapped.tokenizer.encode("Hello world"))
    request = GenerationRequest(
        prompt_ids=prompt, sampling=SamplingConfig(temperature=0), max_new_tokens=6, ignore_stop_tokens=True
    )
    with Engine(snapped) as packed, Engine(snapped, packed_decode="off") as exact:
        assert packed.decode.kind == "int4-packed"
        assert exact.decode.kind == "float"
        assert isinstance(packed.model.lm_head, Float16Head)
        assert exact.model is snapped.model
        runs = {}
        for name, engine in (("packed", packed), ("exact", exact)):
            events = engine.generate(request)
            stats = next(e for e in events if isinstance(e, StatsEvent))
            assert stats.provenance["decode"]["kind"] == engine.decode.kind
            runs[name] = [e for e in events if isinstance(e, TokenEvent)]
    # The first token comes from the same prompt: its probability under both agrees to bfloat16 precision.
    first_packed, first_exact = runs["packed"][0], runs["exact"][0]
    assert len(runs["packed"]) == 6
    exact_logprobs = {a.id: a.prob for a in first_exact.alternatives}
    for token_id, _, prob, _ in first_packed.alternatives[:3]:
        assert prob == pytest.approx(exact_logprobs.get(token_id, 0.0), abs=0.02)


@pytest.mark.integration
def test_the_default_model_is_packed_whole_and_predicts_as_float32_does(real_model_store) -> None:
    from llmcore.evaluate import heldout_text, next_token_agreement, perplexity
    from llmcore.pulls import DEFAULT_MODEL

    loaded = load_model(real_model_store, DEFAULT_MODEL, device="cpu")
    fast, info = pack_for_decode(loaded.model)
    # Every linear layer of the Q4_1 file is on its grid; the Q8_0 embedding (the tied head) is not 4-bit.
    assert (info.kind, info.packed_layers, info.linear_layers, info.head) == (
        "int4-packed",
        210,
        210,
        "float16 (one row), bfloat16 (more rows)",
    )
    packed = dataclasses.replace(loaded, model=fast)
    agreement = next_token_agreement(loaded, packed)
    assert agreement["top1_agreement"] >= 0.98
    assert agreement["mean_kl"] < 2e-3
    text = heldout_text()
    exact_ppl = perplexity(loaded, text, max_tokens=1024)["perplexity"]
    packed_ppl = perplexity(packed, text, max_tokens=1024)["perplexity"]
    assert abs(packed_ppl / exact_ppl - 1) < 0.005
