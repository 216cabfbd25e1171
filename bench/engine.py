"""The generation engine on the default model: time to first token and decode speed for one stream,
aggregate and per-stream speed for two concurrent streams, and plain transformers `generate` on the same
prompt for comparison. Every stream runs to exactly 64 new tokens (end-of-turn tokens are ignored).
No target is enforced yet; the numbers are recorded.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import default_model_store

NEW_TOKENS = 64
PROMPT = "Write a short story about a robot who learns to paint."


def run() -> dict[str, Any]:
    import torch

    from llmcore.engine import DoneEvent, Engine, GenerationRequest, StatsEvent, TokenEvent
    from llmcore.loading import load_model
    from llmcore.pulls import DEFAULT_MODEL
    from llmcore.sampling import SamplingConfig

    loaded = load_model(default_model_store(), DEFAULT_MODEL, device="cpu")
    request = GenerationRequest(
        messages=[{"role": "user", "content": PROMPT}],
        sampling=SamplingConfig(temperature=0),
        max_new_tokens=NEW_TOKENS,
        ignore_stop_tokens=True,
        top_alternatives=5,
    )

    def finish(events: list[Any]) -> tuple[int, StatsEvent]:
        stats = next(e for e in events if isinstance(e, StatsEvent))
        done = events[-1]
        if not isinstance(done, DoneEvent) or done.reason != "length":
            raise RuntimeError(f"the stream did not run to {NEW_TOKENS} tokens: {done}")
        return sum(isinstance(e, TokenEvent) for e in events), stats

    with Engine(loaded) as engine:
        engine.generate(GenerationRequest(prompt_ids=[1, 2, 3], max_new_tokens=4))  # warm-up
        generated, stats = finish(engine.generate(request))

        started = time.perf_counter()
        a, b = engine.submit(request), engine.submit(request)
        (count_a, stats_a), (count_b, stats_b) = finish(a.events()), finish(b.events())
        both_seconds = time.perf_counter() - started

    prompt = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        loaded.model.generate(**prompt, max_new_tokens=4, do_sample=False)  # warm-up
        t = time.perf_counter()
        out = loaded.model.generate(
            **prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
        )
        hf_seconds = time.perf_counter() - t
    hf_generated = out.shape[1] - prompt["input_ids"].shape[1]
    hf_tps = hf_generated / hf_seconds
    # Compare like with like: both include the prefill (the engine's decode-only speed is also given).
    engine_tps = generated / (
        (stats.time_to_first_token_s or 0) + (generated - 1) / (stats.tokens_per_s or 1)
    )

    def r(x: float | None, n: int = 1) -> float | None:
        return None if x is None else round(x, n)

    return {
        "model": DEFAULT_MODEL,
        "device": str(loaded.device),
        "prompt_tokens": stats.prompt_tokens,
        "one_stream": {
            "generated_tokens": generated,
            "time_to_first_token_ms": r((stats.time_to_first_token_s or 0) * 1000),
            "decode_tokens_per_second": r(stats.tokens_per_s),
            "end_to_end_tokens_per_second": r(engine_tps),
        },
        "two_streams": {
            "generated_tokens": [count_a, count_b],
            "aggregate_tokens_per_second": r((count_a + count_b) / both_seconds),
            "per_stream_decode_tokens_per_second": [r(stats_a.tokens_per_s), r(stats_b.tokens_per_s)],
            "time_to_first_token_ms": [
                r((stats_a.time_to_first_token_s or 0) * 1000),
                r((stats_b.time_to_first_token_s or 0) * 1000),
            ],
        },
        "hf_generate": {"generated_tokens": hf_generated, "tokens_per_second": r(hf_tps)},
        "engine_over_generate": r(engine_tps / hf_tps, 2),
        "targets": {},  # none enforced yet: this benchmark records the baseline
    }
