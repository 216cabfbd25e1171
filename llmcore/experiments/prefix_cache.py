"""Prefix caching: time to first token as a conversation grows, the cache on and off.

One conversation, turn after turn: a user message of about `turn_tokens` tokens of the held-out text,
then the model's answer, which the next turn's prompt holds too. Each turn runs twice on one engine:
with the prefix cache first (it finds the blocks the previous turn left), then with
`use_prefix_cache=False` (the whole prompt computed again; what that run leaves behind adds nothing the
cached run had not already left, so it never helps the next turn's cached run).
"""

from __future__ import annotations

from typing import Any

from llmcore.evaluate import heldout_text
from llmcore.experiments.common import (
    chart,
    column,
    greedy,
    ms,
    progress,
    prompt_tokens,
    run_one,
    series,
    warm_engine,
    words_to_fit,
)
from llmcore.experiments.configs import PrefixCacheConfig
from llmcore.jobs import JobContext, JobFailed
from llmcore.loading import LoadedModel

SYSTEM = "You are a patient assistant. Answer the user's questions about the text they send."


def prefix_cache_sweep(
    loaded: LoadedModel, config: PrefixCacheConfig, ctx: JobContext, options: dict[str, Any]
) -> dict[str, Any]:
    words = heldout_text().split()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    history: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
    with warm_engine(loaded, options) as engine:
        context = engine.context_length
        # Each turn adds a message, the template's markers around it and an answer: share what is left.
        overhead = prompt_tokens(loaded, [*history, {"role": "user", "content": "Part 8:"}])
        per_turn = min(config.turn_tokens, (context - overhead) // config.turns - config.new_tokens - 16)
        if per_turn < 8:
            raise JobFailed(
                f"{loaded.name}'s context ({context} tokens) is too short for {config.turns} turns with "
                f"{config.new_tokens}-token answers; choose fewer turns or shorter answers."
            )
        offset = 0
        for turn in range(1, config.turns + 1):
            message = words_to_fit(loaded.tokenizer, (words[offset:] + words)[:per_turn], per_turn)
            offset = (offset + len(message.split())) % len(words)
            history.append({"role": "user", "content": f"Part {turn}: {message}"})
            if prompt_tokens(loaded, history) + config.new_tokens > context:
                notes.append(f"turn {turn} does not fit {loaded.name}'s context ({context} tokens)")
                break
            cached, _ = run_one(engine, greedy(loaded, history, config.new_tokens), ctx)
            plain, _ = run_one(engine, greedy(loaded, history, 1, use_prefix_cache=False), ctx)
            history.append({"role": "assistant", "content": cached.text})
            row = {
                "turn": turn,
                "prompt_tokens": cached.stats.prompt_tokens,
                "ttft_ms_cache_on": ms(cached.stats.time_to_first_token_s),
                "ttft_ms_cache_off": ms(plain.stats.time_to_first_token_s),
                "cached_tokens_cache_on": cached.stats.cached_prompt_tokens,
                "cached_tokens_cache_off": plain.stats.cached_prompt_tokens,
            }
            rows.append(row)
            line = (
                f"turn {turn}: {row['prompt_tokens']} prompt tokens; first token after "
                f"{row['ttft_ms_cache_on']} ms with the cache ({row['cached_tokens_cache_on']} from it), "
                f"{row['ttft_ms_cache_off']} ms without"
            )
            progress(ctx, turn, config.turns, line)
        facts = engine.runner.describe()
    if not rows:
        raise JobFailed(f"Not even one turn fits {loaded.name}'s context; choose shorter answers.")
    last = rows[-1]
    on, off = last["ttft_ms_cache_on"] or 0, last["ttft_ms_cache_off"] or 0
    summary = (
        f"Turn {last['turn']} ({last['prompt_tokens']} prompt tokens, {last['cached_tokens_cache_on']} of "
        f"them from the cache): first token after {on} ms with the prefix cache, {off} ms without"
        + (f" ({off / on:.1f}x)." if on else ".")
    )
    return {
        "engine": facts,
        "charts": [
            chart(
                "ttft",
                "Time to first token against conversation length",
                "turn",
                "ms",
                [
                    series("cache on", column(rows, "turn", "ttft_ms_cache_on")),
                    series("cache off", column(rows, "turn", "ttft_ms_cache_off")),
                ],
            ),
            chart(
                "cached",
                "Prompt tokens, and those read from the prefix cache",
                "turn",
                "tokens",
                [
                    series("prompt", column(rows, "turn", "prompt_tokens")),
                    series("from the cache, cache on", column(rows, "turn", "cached_tokens_cache_on")),
                    series("from the cache, cache off", column(rows, "turn", "cached_tokens_cache_off")),
                ],
            ),
        ],
        "table": rows,
        "summary": summary,
        "notes": [f"each user message adds about {per_turn} tokens of text", *notes],
    }
