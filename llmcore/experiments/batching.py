"""Continuous batching: n streams at once, for each n the user picked.

Each size is one run of n different prompts submitted together to one engine (no prefix cache: the
prompts share their chat-template start, and this measures batching alone). Aggregate tokens/s is every
stream's tokens over the run's wall time (prefills included); per-stream figures are medians of the
engine's own stats; `batch_size_max` is the most streams that shared one forward pass.
"""

from __future__ import annotations

import time
from typing import Any

from llmcore.engine import EngineLimits
from llmcore.experiments.common import (
    chart,
    collect,
    column,
    greedy,
    median,
    ms,
    progress,
    rnd,
    series,
    warm_engine,
)
from llmcore.experiments.configs import BatchingConfig
from llmcore.jobs import JobContext
from llmcore.loading import LoadedModel

PROMPTS = (
    "Write a short story about a robot who learns to paint.",
    "Explain why the sky is blue to a ten-year-old.",
    "List five uses of a paperclip.",
    "What is the capital of France, and what is it famous for?",
    "Describe a walk through a forest in autumn.",
    "Give three tips for learning a new language.",
    "How does a bicycle stay upright?",
    "Write a haiku about the sea.",
)


def prompts_for(n: int) -> list[str]:
    """n different prompts: the eight above, then again with a version number."""
    out = []
    for i in range(n):
        round_, base = divmod(i, len(PROMPTS))
        out.append(PROMPTS[base] + (f" (Version {round_ + 1}.)" if round_ else ""))
    return out


def batching_sweep(
    loaded: LoadedModel, config: BatchingConfig, ctx: JobContext, options: dict[str, Any]
) -> dict[str, Any]:
    sizes = sorted(config.batch_sizes)
    rows: list[dict[str, Any]] = []
    limits = EngineLimits(max_sequences=max(sizes), prefix_cache_mb=0)
    with warm_engine(loaded, options, limits=limits) as engine:
        for step, n in enumerate(sizes, 1):
            started = time.perf_counter()
            streams = [engine.submit(greedy(loaded, p, config.new_tokens)) for p in prompts_for(n)]
            outcomes = collect(streams, ctx)
            seconds = time.perf_counter() - started
            per_stream = median(o.stats.tokens_per_s for o in outcomes)
            row = {
                "batch_size": n,
                "aggregate_tokens_per_s": rnd(sum(o.tokens for o in outcomes) / seconds),
                "per_stream_tokens_per_s": rnd(per_stream),
                "inter_token_ms": rnd(1000 / per_stream if per_stream else None),
                "time_to_first_token_ms": ms(median(o.stats.time_to_first_token_s for o in outcomes)),
                "batch_size_max": max(o.stats.batch_size_max for o in outcomes),
                "seconds": rnd(seconds, 2),
            }
            rows.append(row)
            line = (
                f"batch {n}: {row['aggregate_tokens_per_s']} tokens/s in all, "
                f"{row['per_stream_tokens_per_s']} per stream"
            )
            progress(ctx, step, len(sizes), line, tokens_per_s=row["aggregate_tokens_per_s"])
        facts = engine.runner.describe()
    first, last = rows[0], rows[-1]
    gain = (last["aggregate_tokens_per_s"] or 0) / (first["aggregate_tokens_per_s"] or 1)
    summary = (
        f"{last['batch_size']} streams at once: {last['aggregate_tokens_per_s']} tokens/s in all, "
        f"{gain:.1f}x batch {first['batch_size']} ({first['aggregate_tokens_per_s']}); each stream "
        f"{last['per_stream_tokens_per_s']} tokens/s, {last['inter_token_ms']} ms between its tokens."
    )
    notes = [
        f"batch {r['batch_size']}: at most {r['batch_size_max']} streams shared one forward pass"
        for r in rows
        if r["batch_size_max"] < r["batch_size"]
    ]
    return {
        "engine": facts,
        "charts": [
            chart(
                "throughput",
                "Tokens per second against batch size",
                "batch size",
                "tokens/s",
                [
                    series("aggregate", column(rows, "batch_size", "aggregate_tokens_per_s")),
                    series("per stream (decode)", column(rows, "batch_size", "per_stream_tokens_per_s")),
                ],
                scale="log2",
            ),
            chart(
                "latency",
                "Per-stream latency against batch size",
                "batch size",
                "ms",
                [
                    series("between tokens", column(rows, "batch_size", "inter_token_ms")),
                    series("first token", column(rows, "batch_size", "time_to_first_token_ms")),
                ],
                scale="log2",
            ),
        ],
        "table": rows,
        "summary": summary,
        "notes": notes,
    }
