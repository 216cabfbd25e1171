"""Foundation numbers for the default model on this machine: how long a load from the store takes, the
latency of one forward pass over a prompt, plain transformers `generate` decode speed (the baseline later
engines are compared with), and peak memory. Targets are checked here, never in timed tests.
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

from bench.common import default_model_store


def run() -> dict[str, Any]:
    import torch

    from llmcore.loading import load_model
    from llmcore.pulls import DEFAULT_MODEL

    store = default_model_store()

    started = time.perf_counter()
    loaded = load_model(store, DEFAULT_MODEL, device="cpu")
    load_seconds = time.perf_counter() - started
    tok, model = loaded.tokenizer, loaded.model

    text = "The quick brown fox jumps over the lazy dog. " * 12
    ids = tok(text, return_tensors="pt").input_ids[:, :128]
    forward = []
    with torch.inference_mode():
        model(ids)  # warm-up
        for _ in range(5):
            t = time.perf_counter()
            model(ids)
            forward.append(time.perf_counter() - t)

    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Write a short story about a robot who learns to paint."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    new_tokens = 64
    with torch.inference_mode():
        t = time.perf_counter()
        model.generate(**prompt, max_new_tokens=1, min_new_tokens=1, do_sample=False)
        first_token = time.perf_counter() - t
        t = time.perf_counter()
        out = model.generate(**prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        decode_seconds = time.perf_counter() - t
    generated = out.shape[1] - prompt["input_ids"].shape[1]

    return {
        "model": DEFAULT_MODEL,
        "load_seconds": round(load_seconds, 3),
        "forward_128_tokens_ms": round(statistics.median(forward) * 1000, 1),
        "hf_generate_time_to_first_token_ms": round(first_token * 1000, 1),
        "hf_generate_decode_tokens_per_second": round(generated / decode_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
