"""Attention captures against their memory cap: eight ~960-token captures of the default model through a
2 GB CaptureCache, as the web process makes them (reserve, capture, keep, on one worker thread), with the
process's RSS after each. Target: RSS above the warmed-up model stays within 10 % of what the cache counts.
"""

from __future__ import annotations

import resource
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import default_model_store

CAPTURES = 8
TOKENS = 961
CACHE_MB = 2048
OVERHEAD_MAX = 0.10


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run() -> dict[str, Any]:
    from llmcore.attention import AttentionInput, CaptureCache, capture_attention, capture_size, token_labels
    from llmcore.loading import load_model
    from llmcore.pulls import DEFAULT_MODEL

    loaded = load_model(default_model_store(), DEFAULT_MODEL)
    tok = loaded.tokenizer
    cache = CaptureCache(max_captures=6, max_bytes=CACHE_MB << 20)

    def one(i: int) -> None:
        text = " ".join(
            f"Sentence {i}-{j} tells the model one more small thing about attention." for j in range(200)
        )
        ids = tok(text).input_ids[:TOKENS]
        inp = AttentionInput(token_ids=ids, tokens=token_labels(tok, ids), as_chat=False)
        with cache.reserve(capture_size(loaded.model, len(ids)).peak) as room:
            room.keep(capture_attention(loaded.model, inp, model_name=DEFAULT_MODEL, is_causal=True), i)

    # Django runs sync views on one shared thread under ASGI; the first short capture pages the weights in.
    with ThreadPoolExecutor(1) as pool:
        warm = tok("Hello there").input_ids
        pool.submit(
            capture_attention,
            loaded.model,
            AttentionInput(warm, token_labels(tok, warm), False),
            model_name=DEFAULT_MODEL,
            is_causal=True,
        ).result()
        base = _rss_mb()
        steps = []
        for i in range(CAPTURES):
            pool.submit(one, i).result()
            steps.append({"rss_mb": round(_rss_mb()), "cache_mb": round(cache.total_bytes() / 2**20)})
    counted = cache.total_bytes() / 2**20
    over = (_rss_mb() - base - counted) / counted
    return {
        "model": DEFAULT_MODEL,
        "tokens": TOKENS,
        "cache_mb": CACHE_MB,
        "kept_captures": len(cache),
        "base_rss_mb": round(base),
        "steps": steps,
        "rss_over_counted_fraction": round(over, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "targets": {"rss_over_counted_max": OVERHEAD_MAX, "rss_over_counted_met": over <= OVERHEAD_MAX},
    }
