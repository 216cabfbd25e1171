"""Quantized children on the CPU kernels (llmcore.packed): torchao's integer weights read exactly, the
packed copy predicting as the torchao child does, the loaded child untouched, and a kernel that
disagrees refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from llmcore.engine import Engine, GenerationRequest, TokenEvent
from llmcore.jobs import JobContext
from llmcore.loading import LoadedModel, load_model
from llmcore.packed import (
    FROM_TORCHAO,
    DynamicInt8Linear,
    Float16Head,
    PackedInt4Linear,
    PackedInt8Linear,
    pack_for_decode,
)
from llmcore.quantize import QuantizeConfig, run_quantize
from llmcore.sampling import SamplingConfig
from llmcore.store import ModelStore
from tests.conftest import TINY_NAME

TEXT = "Hello world, this is a test of packed weights."
# method (group size) -> the kind pack_for_decode reports and the module each linear layer becomes
CHILDREN = {
    "int8_weight": ("int8-packed", PackedInt8Linear),
    "int4_weight": ("int4-packed", PackedInt4Linear),
    "int8_dynamic": ("int8-dynamic-packed", DynamicInt8Linear),
}


def quantized_child(
    store: ModelStore, source: Path, out: Path, method: str, group_size: int | None = None
) -> LoadedModel:
    """The tiny model quantized by llmcore.quantize, imported as a child and loaded as chat loads it."""
    run_quantize(source, out, QuantizeConfig(method, group_size=group_size), JobContext())
    name = f"tiny-{method.replace('_', '-')}-{group_size or 'default'}"
    store.import_folder(out, name, parent=TINY_NAME, method=method)
    return load_model(store, name, device="cpu")


def logits(model: nn.Module, loaded: LoadedModel) -> torch.Tensor:
    tokens = torch.tensor([loaded.tokenizer.encode(TEXT)])
    with torch.inference_mode():
        return model(tokens).logits[0].float()


@pytest.fixture(params=list(CHILDREN))
def method(request) -> str:
    return str(request.param)


@pytest.fixture
def child(method: str, store, tiny_model, tiny_model_dir: Path, tmp_path: Path) -> LoadedModel:
    return quantized_child(store, tiny_model_dir, tmp_path / "out", method)


def test_a_quantized_child_is_packed_and_predicts_as_the_torchao_child_does(
    method: str, child: LoadedModel
) -> None:
    kind, module_type = CHILDREN[method]
    want = logits(child.model, child)
    fast, info = pack_for_decode(child.model)
    assert fast is not child.model
    assert (info.kind, info.packed_layers, info.linear_layers) == (kind, 14, 14)
    assert info.head.startswith("float16")  # the head is not quantized: it gets the parent's 16-bit head
    assert info.source == FROM_TORCHAO
    assert info.label.endswith("(14 of 14 layers)")
    assert info.as_json()["kind"] == kind
    for layer in fast.model.layers:
        for linear in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.mlp.down_proj):
            assert type(linear) is module_type
    assert isinstance(fast.lm_head, Float16Head)
    # the loaded child, which other pages keep using, still runs torchao's own tensors
    q_proj = child.model.model.layers[0].self_attn.q_proj
    assert type(q_proj) is nn.Linear
    assert type(q_proj.weight.data).__module__.startswith("torchao.")
    assert torch.equal(logits(child.model, child), want)

    got = logits(fast, child)
    assert not torch.equal(got, want)  # it really ran other kernels
    # bfloat16 layer inputs (and, for int4, bfloat16 scales) and a float16 head: about 3 digits
    assert float((got - want).norm() / want.norm()) < 1e-2
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_an_int4_child_keeps_its_group_size(
    store: ModelStore, tiny_model, tiny_model_dir: Path, tmp_path: Path
) -> None:
    child = quantized_child(store, tiny_model_dir, tmp_path / "out", "int4_weight", group_size=64)
    fast, info = pack_for_decode(child.model)
    assert info.kind == "int4-packed"
    down = fast.model.layers[0].mlp.down_proj
    assert isinstance(down, PackedInt4Linear)
    assert down.group_size == 64
    want, got = logits(child.model, child), logits(fast, child)
    assert float((got - want).norm() / want.norm()) < 1e-2


def test_int8_codes_are_read_in_place_not_copied(
    store: ModelStore, tiny_model, tiny_model_dir: Path, tmp_path: Path
) -> None:
    child = quantized_child(store, tiny_model_dir, tmp_path / "out", "int8_weight")
    fast, info = pack_for_decode(child.model)
    packed = fast.model.layers[1].mlp.up_proj
    assert isinstance(packed, PackedInt8Linear)
    torchao_weight = child.model.model.layers[1].mlp.up_proj.weight
    assert packed.qdata.data_ptr() == torchao_weight.qdata.data_ptr()
    # what the copy adds: per-row scales and the 16-bit head, not the int8 codes again
    scales = sum(
        b.numel() * b.element_size()
        for m in fast.modules()
        if isinstance(m, PackedInt8Linear)
        for b in (m.ones, m.scale)
    )
    head = sum(b.numel() * b.element_size() for b in fast.lm_head.buffers())
    assert info.extra_bytes == head + scales


def test_a_kernel_that_disagrees_leaves_the_child_as_it_is(
    store: ModelStore, tiny_model, tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    child = quantized_child(store, tiny_model_dir, tmp_path / "out", "int8_weight")
    real = PackedInt8Linear.forward
    monkeypatch.setattr(PackedInt8Linear, "forward", lambda self, x: 1.1 * real(self, x))  # 10 % off
    fast, info = pack_for_decode(child.model)
    assert fast is child.model
    assert info.kind == "float"
    assert "int8 kernel disagrees" in info.reason
    assert info.label == "torchao weights on torchao's kernels"  # not "float weights": it is int8


def test_the_engine_generates_the_torchao_childs_greedy_tokens(method: str, child: LoadedModel) -> None:
    prompt = list(child.tokenizer.encode("Hello world"))
    new_tokens = 8
    # the child's own greedy continuation, computed by its torchao tensors without the engine
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        for _ in range(new_tokens):
            next_id = child.model(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], 1)
    want = ids[0, len(prompt) :].tolist()
    request = GenerationRequest(
        prompt_ids=prompt,
        sampling=SamplingConfig(temperature=0),
        max_new_tokens=new_tokens,
        ignore_stop_tokens=True,
    )
    with Engine(child) as engine:
        events = engine.generate(request)
    assert [e.id for e in events if isinstance(e, TokenEvent)] == want
    # ...and it ran the packed copy to get them (the provenance a saved answer records)
    (provenance,) = [e.provenance for e in events if hasattr(e, "provenance")]
    assert provenance["decode"]["kind"] == CHILDREN[method][0]
