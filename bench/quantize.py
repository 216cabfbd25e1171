"""Quantization on the default model: every method's verify report (size, memory, decode speed, time to
first token, perplexity on the held-out text, top-1 agreement, KL) against the original, measured on this
machine. `python -m bench quantize`; BENCH_QUANT_METHODS=int8_weight,bf16 picks a subset.
No target is enforced; the numbers are recorded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import default_model_store

KEEP = (
    "summary",
    "size_ratio",
    "memory_ratio",
    "perplexity_change_pct",
    "speed_ratio",
    "top1_agreement",
    "mean_kl",
    "parent",
    "quantized",
)


def run() -> dict[str, Any]:
    import torch

    from llmcore.jobs import JobContext
    from llmcore.pulls import DEFAULT_MODEL
    from llmcore.quantize import QUANT_METHODS, QuantizeConfig, check_quantize, run_quantize, verify

    source = default_model_store().path(DEFAULT_MODEL)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = [m for m in os.environ.get("BENCH_QUANT_METHODS", ",".join(QUANT_METHODS)).split(",") if m]
    results: dict[str, Any] = {"model": DEFAULT_MODEL, "device": device, "methods": {}}
    for method in chosen:
        config = QuantizeConfig(method)
        reasons = check_quantize(config, source, device)
        if reasons:
            results["methods"][method] = {"skipped": reasons}
            continue
        out = Path(tempfile.mkdtemp(prefix=f"bench-quantize-{method}-"))
        try:
            ctx = JobContext(device=device)
            started = time.perf_counter()
            run_quantize(source, out, config, ctx)
            quantize_seconds = time.perf_counter() - started
            report = verify(source, out, ctx)
            results["methods"][method] = {
                "quantize_seconds": round(quantize_seconds, 1),
                **{key: report[key] for key in KEEP},
            }
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return results
