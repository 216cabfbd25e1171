"""The runner's speed-ups change no number: fused q/k/v and gate/up products, the lean forward."""

from __future__ import annotations

import pytest
import torch

from llmcore.engine import Engine, GenerationRequest, TokenEvent
from llmcore.engine.fused import fuse_projections
from llmcore.loading import load_model
from llmcore.packed import DENSE_ROWS, PackedInt4Linear, pack_for_decode
from llmcore.sampling import SamplingConfig
from tests.llmcore.test_packed import snap_layers


@pytest.fixture
def snapped(store, tiny_model):
    loaded = load_model(store, "tiny-llama", device="cpu")
    assert snap_layers(loaded.model) == 14
    return loaded


def test_fused_groups_give_the_packed_layers_numbers(snapped) -> None:
    fast, info = pack_for_decode(snapped.model, "auto")
    assert info.kind != "float"
    tokens = torch.tensor([snapped.tokenizer.encode("Fused products must not change a thing.")])
    with torch.inference_mode():
        before = fast(tokens).logits.float()
        assert fuse_projections(fast, snapped.model) == 4  # 2 layers x (q/k/v, gate/up)
        after = fast(tokens).logits.float()
        layer = fast.model.layers[0]
        assert not isinstance(layer.self_attn.k_proj, PackedInt4Linear)  # it reads the group's output
        x = torch.randn(1, 3, layer.self_attn.q_proj.in_features)
        other = torch.randn(1, 3, layer.self_attn.q_proj.in_features)
        layer.self_attn.q_proj(x)
        # a call with another input than the group last saw computes it again
        want = snapped.model.model.layers[0].self_attn.k_proj(other)
        torch.testing.assert_close(layer.self_attn.k_proj(other), want, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_the_engine_fuses_its_packed_copy_and_not_the_loaded_model(snapped) -> None:
    request = GenerationRequest(
        prompt_ids=snapped.tokenizer.encode("once upon a time"),
        sampling=SamplingConfig(temperature=0),
        max_new_tokens=20,
        ignore_stop_tokens=True,
    )
    with Engine(snapped) as engine:
        assert engine.runner.fused_groups == 4
        # every 4-bit layer, fused or not, keeps its bfloat16 copy for passes over many rows
        packed = [m for m in engine.model.modules() if isinstance(m, PackedInt4Linear)]
        assert len(packed) == 2 * (2 + 2)  # per layer q/k/v and gate/up fused, o and down alone
        assert all(m.dense is not None for m in packed)
        assert engine.decode.dense_rows == DENSE_ROWS
        fused = [e.id for e in engine.generate(request) if isinstance(e, TokenEvent)]
    assert isinstance(snapped.model.model.layers[0].self_attn.q_proj, torch.nn.Linear)
    with Engine(snapped, packed_decode="off") as plain:
        assert plain.runner.fused_groups == 0
        exact = [e.id for e in plain.generate(request) if isinstance(e, TokenEvent)]
    assert fused == exact


@pytest.mark.parametrize("packed", ["auto", "off"])
def test_the_lean_forward_gives_transformers_logits(snapped, packed) -> None:
    from llmcore.engine.runner import ModelRunner

    lean = ModelRunner(snapped, packed_decode=packed)
    full = ModelRunner(snapped, packed_decode=packed)
    full.lean = False
    assert lean.lean
    prompts = [
        snapped.tokenizer.encode(t) for t in ("one two three four", "a much longer second prompt here")
    ]
    with torch.inference_mode():
        got, want = [], []
        for runner, out in ((lean, got), (full, want)):
            runner.cache.reserve(2, 64)
            firsts = [runner.extend(row, 0, ids, keep=len(ids)) for row, ids in enumerate(prompts)]
            step = runner.decode([7, 9], [len(p) for p in prompts])  # two rows of different lengths
            out.extend([*firsts, step])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_eager_attention_and_other_shapes_use_transformers_forward(
    store, tiny_model, tiny_gemma3_dir
) -> None:
    from llmcore.engine.runner import ModelRunner

    loaded = load_model(store, "tiny-llama", device="cpu")
    eager = ModelRunner(loaded, attention="eager")  # the tiny model is not on a grid: nothing is packed
    assert not eager.lean
    # the engine runs a weight-sharing twin; the model other pages use keeps its attention
    assert eager.model is not loaded.model
    assert eager.model.config._attn_implementation == "eager"
    assert loaded.model.config._attn_implementation == "sdpa"
    store.import_folder(tiny_gemma3_dir, "tiny-gemma3", license="MIT")
    gemma = load_model(store, "tiny-gemma3", device="cpu")
    runner = ModelRunner(gemma)
    assert not runner.lean
    assert runner.describe()["forward"] == "transformers"


def test_a_prompt_split_in_two_passes_gives_what_one_pass_gave(snapped) -> None:
    """A prefix-cache hit computes only a prompt's tail, often under DENSE_ROWS tokens: prompt passes use
    the bfloat16 copies whatever their size, so the tail's logits equal the whole pass's (a replay with
    the same seed repeats its answer). A decode-sized pass of the same tail runs the int4 kernel."""
    from llmcore.engine.runner import ModelRunner

    runner = ModelRunner(snapped)
    ids = list(range(40, 60))  # 20 tokens: 16 "cached", a tail of 4
    runner.cache.reserve(3, 32)
    with torch.inference_mode():
        whole = runner.extend(0, 0, ids, prompt=True)[-1]
        runner.extend(1, 0, ids[:16], prompt=True)
        tail = runner.extend(1, 16, ids[16:], prompt=True)[-1]
        runner.extend(2, 0, ids[:16], prompt=True)
        kernel = runner.extend(2, 16, ids[16:])[-1]  # 4 rows, not a prompt pass: the int4 kernel
    assert torch.equal(tail, whole)
    assert not torch.equal(kernel, whole)


def test_the_runner_measures_whether_a_split_prompt_repeats_the_whole_pass(snapped) -> None:
    """The probe a replay's report relies on: prompt passes (bfloat16 copies) are split-invariant here,
    and the same probe tells when they are not (a tail of 8 rows computed as a decode pass takes the
    int4 kernel, which rounds differently)."""
    from llmcore.engine.runner import ModelRunner

    runner = ModelRunner(snapped)
    assert runner.split_invariant is True
    assert runner.describe()["split_invariant"] is True
    assert runner.probe_split(tokens=48, split=40, prompt=False) is False
    assert runner.forward_passes == 0  # the probe's passes are not the engine's
    assert runner.cache.allocated_bytes == 0  # nor its cache rows
