"""Speculative decoding: acceptance and speed-up against draft length k, per proposer.

The task is input-grounded (copy a station log from the prompt), where prompt lookup's n-grams find
what comes next. Plain greedy decoding of the same prompt is the anchor: speed-up is the measured
tokens/s of a run over plain decoding's, end to end; `engine_speedup` is the engine's own estimate for
its verification passes alone. With greedy decoding every run should give the plain answer exactly
(float rounding in a verification pass can flip a near-tie; each run records whether its text was
identical).
"""

from __future__ import annotations

from typing import Any

from llmcore.engine import EngineLimits
from llmcore.engine import SpeculativeConfig as Speculation
from llmcore.experiments.common import (
    chart,
    column,
    greedy,
    progress,
    prompt_tokens,
    rnd,
    run_one,
    series,
    warm_engine,
    words_to_fit,
)
from llmcore.experiments.configs import SpeculativeExperimentConfig
from llmcore.jobs import JobContext, JobFailed
from llmcore.loading import LoadedModel

FACTS = (
    "The Northwind station log, 14 March: wind 23 knots from the north-east, pressure 1004 hPa falling, "
    "air temperature 4.5 degrees, sea temperature 7.1 degrees, visibility 12 kilometres, two fishing "
    "boats sighted at 09:40 heading south, the generator serviced at 11:15 by engineer Marta Olsen, "
    "fuel at 62 percent, the next supply ship expected on 21 March."
)
COPY = "Copy the log above exactly, word for word, then stop."


def grounded_prompt(loaded: LoadedModel, context: int, room_after: int) -> str:
    """The log (as much of it as fits the context with `room_after` tokens left) and the instruction."""
    overhead = prompt_tokens(loaded, [{"role": "user", "content": f"\n\n{COPY}"}])
    room = context - overhead - room_after - 4
    if room < 8:
        raise JobFailed(
            f"{loaded.name}'s context ({context} tokens) leaves no room for a text to copy from; "
            "choose fewer new tokens."
        )
    return f"{words_to_fit(loaded.tokenizer, FACTS.split(), room)}\n\n{COPY}"


def speculative_sweep(
    loaded: LoadedModel, config: SpeculativeExperimentConfig, ctx: JobContext, options: dict[str, Any]
) -> dict[str, Any]:
    proposers = ["prompt_lookup"] + (["draft"] if config.draft_model else [])
    lengths = sorted(config.draft_lengths)
    total = 1 + len(proposers) * len(lengths)
    rows: list[dict[str, Any]] = []
    with warm_engine(loaded, options, limits=EngineLimits(prefix_cache_mb=0)) as engine:
        prompt = grounded_prompt(loaded, engine.context_length, config.new_tokens + max(lengths) + 1)
        plain, plain_s = run_one(engine, greedy(loaded, prompt, config.new_tokens), ctx)
        plain_tps = plain.tokens / plain_s
        progress(ctx, 1, total, f"plain decoding: {plain_tps:.1f} tokens/s", tokens_per_s=plain_tps)
        for proposer in proposers:
            for k in lengths:
                spec = Speculation(method=proposer, num_tokens=k, draft_model=config.draft_model)
                try:
                    outcome, seconds = run_one(
                        engine, greedy(loaded, prompt, config.new_tokens, speculative=spec), ctx
                    )
                except JobFailed as exc:
                    raise JobFailed(f"{proposer} with k={k}: {exc}") from None
                numbers = outcome.stats.speculative
                tps = outcome.tokens / seconds
                row = {
                    "proposer": proposer,
                    "k": k,
                    "acceptance_rate": numbers.get("acceptance_rate"),
                    "proposed": numbers.get("proposed"),
                    "accepted": numbers.get("accepted"),
                    "verify_passes": numbers.get("verify_passes"),
                    "tokens_per_s": rnd(tps),
                    "speedup": rnd(tps / plain_tps, 3),
                    "engine_speedup": numbers.get("speedup"),
                    "same_as_plain": outcome.text == plain.text,
                }
                rows.append(row)
                line = f"{proposer} k={k}: {row['acceptance_rate']} accepted, {row['speedup']}x plain"
                progress(ctx, len(rows) + 1, total, line, tokens_per_s=tps)
        facts = engine.runner.describe()
    best = max(rows, key=lambda r: r["speedup"] or 0)
    rate = best["acceptance_rate"]
    accepted = "no proposals" if rate is None else f"{100 * rate:.0f} % of its proposals"
    summary = (
        f"Best: {best['proposer'].replace('_', ' ')} with k={best['k']}, {best['speedup']}x plain decoding "
        f"({best['tokens_per_s']} against {plain_tps:.1f} tokens/s), {accepted} accepted."
        + ("" if (best["speedup"] or 0) >= 1 else " Speculation did not pay here.")
    )
    names = {"prompt_lookup": "prompt lookup", "draft": f"draft {config.draft_model}"}
    plain_line = series("plain decoding", [(lengths[0], 1.0), (lengths[-1], 1.0)])
    return {
        "engine": facts,
        "plain_tokens_per_s": rnd(plain_tps),
        "charts": [
            chart(
                "acceptance",
                "Acceptance rate against draft length",
                "k (tokens proposed per pass)",
                "share accepted",
                [series(names[p], column(rows, "k", "acceptance_rate", proposer=p)) for p in proposers],
            ),
            chart(
                "speedup",
                "Speed-up over plain decoding against draft length",
                "k (tokens proposed per pass)",
                "x plain tokens/s",
                [
                    *(series(names[p], column(rows, "k", "speedup", proposer=p)) for p in proposers),
                    plain_line,
                ],
            ),
        ],
        "table": rows,
        "summary": summary,
        "notes": [f"greedy, {config.new_tokens} new tokens, a {len(prompt.split())}-word prompt to copy from"]
        + [
            f"{r['proposer']} k={r['k']}: the answer differs from plain decoding (float rounding)"
            for r in rows
            if not r["same_as_plain"]
        ],
    }
