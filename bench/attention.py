"""Attention explorer at its limit: the default model over 1024 tokens. How long the eager forward pass takes,
how much the kept capture weighs, how many bytes the first view needs (meta JSON + the uint8 overview, and the
page's results partial), how long building them takes, what one on-demand head costs, and peak memory.

Targets: the first view's payload is at most 10 MB, and building it after the forward pass takes well under
the 2 s the browser has between the forward pass and the first view (the rest is transfer and drawing; the
e2e test writes what a real browser took to var/test-artifacts/attention-long.json).
"""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any

from bench.common import default_model_store

TOKENS = 1024
FIRST_VIEW_MAX_BYTES = 10_000_000
FIRST_VIEW_MAX_SECONDS = 2.0


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    import django

    django.setup()


def run() -> dict[str, Any]:
    from llmcore.attention import (
        AttentionInput,
        capture_attention,
        pool_overview,
        rows_sum_error,
        token_labels,
    )
    from llmcore.loading import load_model
    from llmcore.pulls import DEFAULT_MODEL

    _django()
    from django.template.loader import render_to_string

    from playground.inspect.services.attention import capture_meta

    store = default_model_store()
    loaded = load_model(store, DEFAULT_MODEL)
    tok = loaded.tokenizer
    text = " ".join(f"Sentence {i} tells the model one more small thing about attention." for i in range(200))
    ids = tok(text).input_ids[:TOKENS]
    assert len(ids) == TOKENS
    inp = AttentionInput(token_ids=ids, tokens=token_labels(tok, ids), as_chat=False)

    # Warm-up on a few tokens: makes the eager twin and touches every kernel once.
    warm = AttentionInput(token_ids=ids[:16], tokens=inp.tokens[:16], as_chat=False)
    capture_attention(loaded.model, warm, model_name=DEFAULT_MODEL, is_causal=True)

    started = time.perf_counter()
    capture = capture_attention(loaded.model, inp, model_name=DEFAULT_MODEL, is_causal=True)
    capture_seconds = time.perf_counter() - started

    # The first view, once the forward pass is done: the overview was pooled layer by layer during the pass
    # (inside forward_seconds); what is left is the meta, its JSON, the overview's bytes and the partial.
    started = time.perf_counter()
    meta = capture_meta(capture)
    meta_json = json.dumps(meta).encode()
    overview = capture.overview_bytes()
    partial = render_to_string(
        "inspect/attention.html#results",
        {"panels": [{"dom_id": "attention-meta-0", "meta": meta}], "errors": []},
    ).encode()
    first_view_seconds = time.perf_counter() - started
    first_view_bytes = len(meta_json) + len(overview)
    page_first_view_bytes = len(partial) + len(overview)
    # For comparison: pooling again from the kept float16 copy, as a capture without the hook would.
    started = time.perf_counter()
    pool_overview(capture.layers)
    pool_seconds = time.perf_counter() - started

    started = time.perf_counter()
    head = capture.head_bytes(capture.num_layers - 1, 0)
    head_seconds = time.perf_counter() - started
    started = time.perf_counter()
    mean = capture.mean_bytes(capture.num_layers - 1)
    mean_seconds = time.perf_counter() - started

    return {
        "model": DEFAULT_MODEL,
        "device": str(loaded.device),
        "tokens": capture.num_tokens,
        "layers_x_heads": [capture.num_layers, capture.num_heads],
        "forward_seconds": round(capture.forward_seconds, 3),
        "capture_seconds_with_overview": round(capture_seconds, 3),
        "capture_kept_bytes": capture.nbytes,
        "first_view_meta_json_bytes": len(meta_json),
        "first_view_overview_bytes": len(overview),
        "first_view_bytes": first_view_bytes,
        "page_results_partial_bytes": len(partial),
        "page_first_view_bytes": page_first_view_bytes,
        "first_view_build_seconds": round(first_view_seconds, 4),
        "overview_pool_from_float16_seconds": round(pool_seconds, 4),
        "head_bytes": len(head),
        "head_build_ms": round(head_seconds * 1000, 2),
        "layer_mean_bytes": len(mean),
        "layer_mean_build_ms": round(mean_seconds * 1000, 2),
        "rows_sum_max_error": round(rows_sum_error(capture), 5),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {
            "first_view_max_bytes": FIRST_VIEW_MAX_BYTES,
            "first_view_bytes_met": max(first_view_bytes, page_first_view_bytes) <= FIRST_VIEW_MAX_BYTES,
            "first_view_build_max_seconds": FIRST_VIEW_MAX_SECONDS,
            "first_view_build_seconds_met": first_view_seconds <= FIRST_VIEW_MAX_SECONDS,
        },
    }
