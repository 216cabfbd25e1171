from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from llmcore.jobs import JobCancelled, JobContext, JobFailed, Update
from llmcore.loading import load_model
from llmcore.pulls import DEFAULT_MODEL
from llmcore.quantize import (
    GGUF_FILE,
    QUANT_METHODS,
    QuantizeConfig,
    check_quantize,
    run_quantize,
    verify,
)
from llmcore.store import ModelStore
from tests.conftest import TINY_NAME, build_tiny_gemma3, require

PROMPTS = ["Hello world! How are you", "The quick brown fox"]


def _quantize(source: Path, out: Path, method: str, **kwargs) -> tuple:
    updates: list[Update] = []
    result = run_quantize(source, out, QuantizeConfig(method, **kwargs), JobContext(on_update=updates.append))
    return result, updates


@pytest.mark.parametrize("method", list(QUANT_METHODS))
def test_each_method_makes_a_smaller_catalog_model_that_loads_and_generates(
    method: str, store: ModelStore, tiny_model, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result, updates = _quantize(tiny_model_dir, out, method)
    assert "config.json" in result.files
    assert "tokenizer.json" in result.files
    assert any(u.phase == "quantizing" or u.phase == "casting" for u in updates)
    assert not any(p.suffix in {".bin", ".pt", ".pth"} for p in out.iterdir())  # no pickle anywhere

    meta = store.import_folder(out, f"tiny-{method.replace('_', '-')}", parent=TINY_NAME, method=method)
    assert meta.parent == TINY_NAME
    assert meta.method == method
    expected_dtype = {"bf16": "bfloat16", "fp16": "float16", "int8_weight": "int8", "int8_dynamic": "int8"}
    if method in expected_dtype:
        assert meta.facts.dtype == expected_dtype[method]
    if method == "gguf_q8_0":
        assert (store.path(meta.name) / GGUF_FILE).is_file()  # kept for download

    loaded = load_model(store, meta.name, device="cpu")
    prompt = loaded.tokenizer("Hello world", return_tensors="pt")
    out_ids = loaded.model.generate(**prompt, max_new_tokens=5, do_sample=False, min_new_tokens=5)
    assert out_ids.shape[1] == prompt["input_ids"].shape[1] + 5

    report = verify(
        tiny_model_dir, store.path(meta.name), JobContext(), PROMPTS, max_tokens=300, new_tokens=4
    )
    parent, child = report["parent"], report["quantized"]
    assert child["disk_bytes"] < parent["disk_bytes"]
    assert report["size_ratio"] > 1.5
    for side in (parent, child):
        assert math.isfinite(side["perplexity"])
        assert side["perplexity"] > 1
        assert side["tokens_per_s"] > 0
        assert side["ttft_s"] > 0
        assert side["memory_bytes"] > 0
    # Random weights are on no 4-bit grid: the parent runs as it is; a torchao child runs on the CPU
    # integer kernels (llmcore.packed), the casts and the GGUF round trip (float weights) as they are.
    assert parent["decode"] == "float weights"
    packed = {
        "int8_weight": "int8 packed",
        "int8_dynamic": "int8 dynamic packed",
        "int4_weight": "4-bit packed",
    }
    assert child["decode"] == (f"{packed[method]} (14 of 14 layers)" if method in packed else "float weights")
    # Random weights give flat distributions, so small changes flip some top-1 choices, but most stay.
    assert 0.8 <= report["top1_agreement"] <= 1.0
    assert 0 <= report["mean_kl"] < 0.1
    assert abs(report["perplexity_change_pct"]) < 5
    assert "smaller on disk" in report["summary"]
    assert "perplexity" in report["summary"]
    if method in {"int8_weight", "int8_dynamic", "int4_weight"}:
        assert child["memory_bytes"] < parent["memory_bytes"]


def test_int4_takes_a_group_size_and_is_recorded(tiny_model_dir: Path, tmp_path: Path) -> None:
    result, _ = _quantize(tiny_model_dir, tmp_path / "out", "int4_weight", group_size=64)
    assert result.extra["group_size"] == 64
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"


def test_bad_requests_are_refused_with_the_reason(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert "Unknown quantization method" in check_quantize(QuantizeConfig("int3"), tiny_model_dir, "cpu")[0]
    (bad_group,) = check_quantize(QuantizeConfig("int4_weight", group_size=48), tiny_model_dir, "cpu")
    assert "Group size 48 does not divide" in bad_group
    assert "64" in bad_group
    assert check_quantize(QuantizeConfig("int4_weight", group_size=64), tiny_model_dir, "cpu") == []
    assert (
        "no group size"
        in check_quantize(QuantizeConfig("int8_weight", group_size=32), tiny_model_dir, "cpu")[0]
    )
    assert "mps" in check_quantize(QuantizeConfig("int8_weight"), tiny_model_dir, "mps")[0]

    out = tmp_path / "out"
    with pytest.raises(JobFailed, match="does not divide"):
        _quantize(tiny_model_dir, out, "int4_weight", group_size=48)
    assert not out.exists() or not any(out.iterdir())


def test_an_already_quantized_source_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    _quantize(tiny_model_dir, tmp_path / "int8", "int8_weight")
    for method in ("int4_weight", "int8_dynamic", "gguf_q8_0"):
        reasons = check_quantize(QuantizeConfig(method), tmp_path / "int8", "cpu")
        assert any("already quantized (torchao Int8WeightOnlyConfig)" in r for r in reasons)


def test_gguf_refuses_architectures_it_cannot_map(tmp_path: Path) -> None:
    gemma = build_tiny_gemma3(tmp_path / "gemma")
    reasons = check_quantize(QuantizeConfig("gguf_q8_0"), gemma, "cpu")
    assert any("GGUF export supports LlamaForCausalLM" in r for r in reasons)


@pytest.mark.parametrize("method", ["int8_weight", "gguf_q8_0"])
def test_cancel_mid_run_leaves_no_model(method: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    seen: list[Update] = []
    ctx = JobContext(on_update=seen.append, is_cancelled=lambda: any(u.phase == "quantizing" for u in seen))
    with pytest.raises(JobCancelled):
        run_quantize(tiny_model_dir, out, QuantizeConfig(method), ctx)
    assert [u for u in seen if u.phase == "quantizing"]  # it was cancelled mid-run, not before starting
    assert list(out.iterdir()) == []


def test_the_gguf_file_reads_back_in_transformers_like_the_source(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import gguf

    result, _ = _quantize(tiny_model_dir, tmp_path / "out", "gguf_q8_0")
    roundtrip = result.extra["gguf_roundtrip"]
    assert roundtrip["top1_agreement"] >= 0.95
    assert roundtrip["max_abs_diff"] < 0.05 * roundtrip["logit_scale"]
    reader = gguf.GGUFReader(tmp_path / "out" / GGUF_FILE)
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == 320


LLAMA_CPP_SCRIPT = """
import json, sys
import llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_batch=256, logits_all=True, verbose=False)
ids = llm.tokenize(sys.argv[2].encode(), add_bos=False, special=False)
print(json.dumps({"ids": ids}), flush=True)
llm.eval(ids)
print(json.dumps({"top1": llm.scores[: len(ids)].argmax(-1).tolist()}), flush=True)
"""


def _llama_cpp_agreement(gguf_path: Path, source: Path, text: str) -> float:
    """Top-1 agreement between llama.cpp on the GGUF and transformers on the source, per position.

    llama.cpp runs in a child process, so that a crash inside it fails or skips this test instead of
    taking the whole test session down.
    """
    import subprocess
    import sys

    from transformers import AutoModelForCausalLM, AutoTokenizer

    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    run = subprocess.run(
        [sys.executable, "-c", LLAMA_CPP_SCRIPT, str(gguf_path), text],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, f"llama.cpp could not load the GGUF:\n{run.stderr[-2000:]}"
    tokenizer = AutoTokenizer.from_pretrained(source)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    # llama.cpp tokenizes with the vocabulary, merges and pre-tokenizer written into the GGUF.
    assert lines[0]["ids"] == ids
    if len(lines) < 2:
        pytest.skip(f"llama-cpp-python crashed while decoding (exit {run.returncode}); tokenization matched")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with torch.no_grad():
        hf_top1 = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1)
    return float((torch.tensor(lines[1]["top1"]) == hf_top1).float().mean())


def test_the_gguf_file_runs_in_llama_cpp(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    _quantize(tiny_model_dir, tmp_path / "out", "gguf_q8_0")
    text = "Hello world! The quick brown fox jumps over the lazy dog."
    assert _llama_cpp_agreement(tmp_path / "out" / GGUF_FILE, tiny_model_dir, text) >= 0.9


# --- the real default model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_source(real_model_store: ModelStore) -> Path:
    require(real_model_store.exists(DEFAULT_MODEL), "the default model is not in the test store")
    return real_model_store.path(DEFAULT_MODEL)


@pytest.mark.integration
def test_int8_weight_only_moves_the_default_models_perplexity_by_less_than_2_percent(
    real_source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "int8"
    _quantize(real_source, out, "int8_weight")
    # The default prompts: about 85 positions for the agreement, enough for a stable number.
    report = verify(real_source, out, JobContext(), max_tokens=4096, new_tokens=8)
    assert report["parent"]["perplexity_tokens"] > 2000
    assert abs(report["perplexity_change_pct"]) < 2
    assert report["size_ratio"] > 1.5
    assert report["memory_ratio"] > 1.5
    assert report["top1_agreement"] > 0.9


@pytest.mark.integration
def test_the_default_model_survives_a_gguf_round_trip(real_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "gguf"
    result, _ = _quantize(real_source, out, "gguf_q8_0")
    assert (out / GGUF_FILE).stat().st_size < 0.5 * (real_source / "model.safetensors").stat().st_size
    assert result.extra["gguf_roundtrip"]["top1_agreement"] > 0.9  # checked by the job itself, on real text
    from llmcore import evaluate
    from llmcore.loading import load_folder

    parent = load_folder(real_source, device="cpu")
    child = load_folder(out, device="cpu")
    agreement = evaluate.next_token_agreement(parent, child, evaluate.DEFAULT_PROMPTS)
    assert agreement["top1_agreement"] > 0.9
    text = evaluate.heldout_text()
    before = evaluate.perplexity(parent, text, max_tokens=1024)["perplexity"]
    after = evaluate.perplexity(child, text, max_tokens=1024)["perplexity"]
    assert abs(after / before - 1) < 0.02
    # The tokenizer written into the GGUF tokenizes like the original one.
    from transformers import AutoTokenizer

    gguf_tok = AutoTokenizer.from_pretrained(out, gguf_file=GGUF_FILE)
    sample = "Lighthouses flash 3 times every 15 seconds: it's simple!"
    assert gguf_tok(sample)["input_ids"] == parent.tokenizer(sample)["input_ids"]
    if importlib.util.find_spec("llama_cpp") is not None:
        sample = evaluate.heldout_text()[:600]
        assert _llama_cpp_agreement(out / GGUF_FILE, real_source, sample) > 0.9
    shutil.rmtree(out)


@pytest.mark.parametrize("method", ["int8_dynamic", "int4_weight", "fp16"])
def test_a_quantized_model_works_in_chat_the_attention_explorer_and_the_logit_lens(
    method: str, store: ModelStore, tiny_model, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from llmcore.attention import capture_attention, prepare_input, rows_sum_error
    from llmcore.engine import DoneEvent, Engine, GenerationRequest, TokenEvent
    from llmcore.lens import logit_lens

    _quantize(tiny_model_dir, tmp_path / "out", method)
    store.import_folder(tmp_path / "out", "tiny-q", parent=TINY_NAME, method=method)
    loaded = load_model(store, "tiny-q", device="cpu")
    with Engine(loaded) as engine:
        events = engine.generate(
            GenerationRequest(messages=[{"role": "user", "content": "hi"}], max_new_tokens=6, seed=1)
        )
    assert any(isinstance(e, TokenEvent) for e in events)
    assert isinstance(events[-1], DoneEvent)
    assert events[-1].error is None
    inp = prepare_input(loaded.tokenizer, "Hello world", as_chat=False, max_tokens=64)
    capture = capture_attention(loaded.model, inp, model_name="tiny-q", is_causal=True)
    assert capture.num_layers == 2
    assert rows_sum_error(capture) < 1e-2
    lens = logit_lens(loaded, inp.token_ids)
    assert lens.layers == 2
    assert len(lens.grid) == 3  # the embeddings, then each layer
