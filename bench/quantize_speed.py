"""Decode speed of quantized children against their float parent, all in one run on this machine:
`python -m bench quantize_speed`.

The default model is quantized on the CPU by llmcore.quantize (int8 weight-only, int4 with group scales,
int8 dynamic) into temporary folders, then every variant decodes the same greedy prompts through the chat
engine, taking turns prompt by prompt (so a burst of load from elsewhere slows all of them, not one):
- parent_float: the parent's float32 weights as they are (ENGINE_PACKED_DECODE=off);
- parent_packed: the parent as chat runs it (its 4-bit-grid layers packed, llmcore.packed), when it packs;
- each child as chat runs it (its torchao weights on PyTorch's CPU integer kernels, llmcore.packed), and
  the same child on torchao's own dispatch (`<method>_torchao`, what chat ran before) for comparison.
Every ratio is against parent_float measured in the same run. Target (issue 12): every packed child
decodes at least as fast as its float parent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import default_model_store

METHODS = ("int8_weight", "int4_weight", "int8_dynamic")
PROMPTS = (
    "Explain in a few sentences why the sky is blue.",
    "Write a short poem about a lighthouse keeper.",
    "List three things to pack for a day of hiking.",
)
NEW_TOKENS = 48


def run() -> dict[str, Any]:
    from llmcore.pulls import DEFAULT_MODEL

    source = default_model_store().path(DEFAULT_MODEL)
    new_tokens = int(os.environ.get("BENCH_QUANT_SPEED_TOKENS", NEW_TOKENS))
    return {"model": DEFAULT_MODEL, **measure(source, new_tokens=new_tokens)}


def measure(source: Path, new_tokens: int = NEW_TOKENS, prompts: tuple[str, ...] = PROMPTS) -> dict[str, Any]:
    """The report for the model folder `source` (its children are made and removed here)."""
    import torch

    from llmcore.jobs import JobContext
    from llmcore.loading import load_folder
    from llmcore.quantize import QuantizeConfig, run_quantize

    cpu = torch.device("cpu")
    work = Path(tempfile.mkdtemp(prefix="bench-quantize-speed-"))
    try:
        variants: dict[str, tuple[Any, str]] = {}  # name -> (loaded model, packed_decode mode)
        parent = load_folder(source, device=cpu)
        variants["parent_float"] = (parent, "off")
        variants["parent_packed"] = (parent, "auto")
        quantize_seconds: dict[str, float] = {}
        for method in METHODS:
            started = time.perf_counter()
            run_quantize(source, work / method, QuantizeConfig(method), JobContext(device="cpu"))
            quantize_seconds[method] = round(time.perf_counter() - started, 1)
            child = load_folder(work / method, device=cpu)
            variants[method] = (child, "auto")
            variants[f"{method}_torchao"] = (child, "off")
        speeds = _decode_speeds(variants, prompts, new_tokens)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if speeds["parent_packed"]["decode"] == speeds["parent_float"]["decode"]:
        del speeds["parent_packed"]  # nothing on a 4-bit grid: the same as parent_float
    anchor = speeds["parent_float"]["tokens_per_s"]
    for numbers in speeds.values():
        numbers["ratio_to_parent_float"] = round(numbers["tokens_per_s"] / anchor, 3) if anchor else 0.0
    slowest = min(speeds[m]["ratio_to_parent_float"] for m in METHODS)
    return {
        "device": "cpu",
        "threads": "the chat engine's (ENGINE_THREADS, default 1)",
        "prompts": len(prompts),
        "new_tokens": new_tokens,
        "anchor": "parent_float: the parent's float32 weights through the same engine, same run",
        "quantize_seconds": quantize_seconds,
        "variants": speeds,
        "targets": {
            "packed_children_at_least_as_fast_as_float_parent": {
                "value": slowest,
                "target": ">= 1.0",
                "met": slowest >= 1.0,
            }
        },
    }


def _decode_speeds(
    variants: dict[str, tuple[Any, str]], prompts: tuple[str, ...], new_tokens: int
) -> dict[str, dict[str, Any]]:
    """Mean greedy decode tokens/s and time to first token per variant, each prompt sent as chat sends it,
    and how the engine multiplied (llmcore.quantize.decode_speeds), rounded for the report."""
    from llmcore.quantize import decode_speeds

    speeds = decode_speeds(
        {name: loaded for name, (loaded, _) in variants.items()},
        prompts,
        new_tokens,
        packed_decode={name: mode for name, (_, mode) in variants.items()},
        as_chat=True,
        warmup_tokens=4,
    )
    return {
        name: {
            "tokens_per_s": round(numbers["tokens_per_s"], 2),
            "ttft_s": round(numbers["ttft_s"], 3),
            "decode": numbers["decode"],
        }
        for name, numbers in speeds.items()
    }
