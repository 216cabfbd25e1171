"""Attention kernels: prefill time against prompt length, per attention backend.

One engine per backend (llmcore.kernels: SDPA's own choice, math, flash, memory-efficient, eager), each
prompt computed in one forward pass (the prefill chunk is the longest length) with the prefix cache
off. Prefill time is the time to the first token of a one-token answer; the median of `repeats` runs is
plotted. The prompts are the held-out text, repeated as often as the longest length needs.
"""

from __future__ import annotations

from typing import Any

from llmcore import kernels
from llmcore.encoding import encode_text
from llmcore.engine import EngineLimits
from llmcore.evaluate import heldout_text
from llmcore.experiments.common import (
    chart,
    column,
    greedy,
    median,
    ms,
    progress,
    rnd,
    run_one,
    series,
    warm_engine,
)
from llmcore.experiments.configs import AttentionConfig
from llmcore.jobs import JobContext, JobFailed
from llmcore.loading import LoadedModel


def prompt_ids(loaded: LoadedModel, length: int) -> list[int]:
    text = heldout_text()
    ids = encode_text(loaded.tokenizer, text)
    while len(ids) < length:
        ids += encode_text(loaded.tokenizer, text, add_special_tokens=False)
    return ids[:length]


def attention_sweep(
    loaded: LoadedModel, config: AttentionConfig, ctx: JobContext, options: dict[str, Any]
) -> dict[str, Any]:
    limit = loaded.context_length
    lengths = sorted(config.lengths)
    if lengths[-1] >= limit:
        raise JobFailed(
            f"{lengths[-1]:,} tokens do not fit {loaded.name}'s context ({limit:,}); choose shorter."
        )
    available = kernels.available_backends(loaded.device)
    backends = [b for b in (config.backends or available) if b in available]
    notes = [
        f"{b}: not available on this worker's {loaded.device.type}"
        for b in config.backends
        if b not in available
    ]
    if not backends:
        raise JobFailed(f"None of the backends asked for runs on this worker; {', '.join(available)} do.")
    ids = prompt_ids(loaded, lengths[-1])
    limits = EngineLimits(max_sequences=1, prefix_cache_mb=0, prefill_chunk=max(lengths[-1], 16))
    rows: list[dict[str, Any]] = []
    was = kernels.model_attention(loaded.model)
    try:
        for backend in backends:
            with warm_engine(loaded, options, limits=limits, attention=backend) as engine:
                label = engine.runner.describe()["attention"]["label"]
                for n in lengths:
                    times = [
                        run_one(engine, greedy(loaded, ids[:n], 1, use_prefix_cache=False), ctx)[
                            0
                        ].stats.time_to_first_token_s
                        for _ in range(config.repeats)
                    ]
                    prefill = median(times)
                    rows.append(
                        {
                            "backend": backend,
                            "label": label,
                            "tokens": n,
                            "prefill_ms": ms(prefill, 2),
                            "tokens_per_s": rnd(n / prefill) if prefill else None,
                        }
                    )
                    progress(
                        ctx,
                        len(rows),
                        len(backends) * len(lengths),
                        f"{backend}, {n} tokens: {ms(prefill)} ms",
                    )
    finally:  # without a packed copy the engine switched the loaded model itself: put it back
        if kernels.model_attention(loaded.model) != was:
            loaded.model.set_attn_implementation(was)
    longest = sorted((r for r in rows if r["tokens"] == lengths[-1]), key=lambda r: r["prefill_ms"] or 0)
    summary = (
        f"At {lengths[-1]:,} tokens: "
        + ", ".join(f"{r['backend']} {r['prefill_ms']:,.1f} ms" for r in longest)
        + f"; fastest: {longest[0]['backend']}."
    )
    return {
        "engine": {"attention_available": available},
        "charts": [
            chart(
                "prefill",
                "Prefill time against prompt length",
                "prompt tokens",
                "ms",
                [series(b, column(rows, "tokens", "prefill_ms", backend=b)) for b in backends],
                scale="log2",
            )
        ],
        "table": rows,
        "summary": summary,
        "notes": [*notes, "prefill time: time to the first token of a one-token answer (one forward pass)"],
    }
