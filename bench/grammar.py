"""What structured output costs (llmcore.grammar), on the default model, in one run:

- one greedy stream under a JSON schema against the same stream unconstrained (the anchor), runs
  interleaved, every run exactly NEW_TOKENS long (the schema is an array of at least 500 strings, so the
  grammar never completes first);
- eight streams at once, all constrained, and seven plain with one constrained, against eight plain: what a
  constrained sequence costs the batch it shares;
- the grammar's own parts: converting the tokenizer (once per loaded model), compiling a schema the
  first time and again from the cache, one mask and one advance per step.

Targets are ratios within this run.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import default_model_store

NEW_TOKENS = int(os.environ.get("BENCH_GRAMMAR_NEW_TOKENS", "64"))
RUNS = int(os.environ.get("BENCH_GRAMMAR_RUNS", "3"))
PROMPT = "List as many city names as you can, as a JSON array of strings."
SCHEMA = {"type": "array", "items": {"type": "string", "maxLength": 40}, "minItems": 500}
CONSTRAINED_MIN_OVER_PLAIN = 0.9  # one stream: the mask may cost at most a tenth of the decode speed
MIXED_MIN_OVER_PLAIN = 0.9  # eight streams, one constrained: the batch keeps nine tenths of its speed


def run() -> dict[str, Any]:
    from llmcore.pulls import DEFAULT_MODEL

    return measure(default_model_store().root, DEFAULT_MODEL)


def measure(store_root: Path, model: str, new_tokens: int = NEW_TOKENS, runs: int = RUNS) -> dict[str, Any]:
    from llmcore.engine import Engine
    from llmcore.loading import load_model
    from llmcore.store import ModelStore

    loaded = load_model(ModelStore(store_root), model, device="cpu")
    out: dict[str, Any] = {"model": model, "new_tokens": new_tokens, "runs": runs}
    out["parts"] = grammar_parts(loaded)
    with Engine(loaded) as engine:
        out["single"] = single_stream(engine, new_tokens, runs)
        out["eight"] = eight_streams(engine, new_tokens)
    out["targets"] = {
        name: {"value": value, "target": target, "met": value is not None and value >= target}
        for name, value, target in (
            (
                "constrained_single_over_plain",
                out["single"]["constrained_over_plain"],
                CONSTRAINED_MIN_OVER_PLAIN,
            ),
            ("one_constrained_in_eight_over_plain", out["eight"]["mixed_over_plain"], MIXED_MIN_OVER_PLAIN),
        )
    }
    return out


def request(new_tokens: int, constrained: bool) -> Any:
    from llmcore.engine import GenerationRequest
    from llmcore.grammar import json_schema
    from llmcore.sampling import SamplingConfig

    return GenerationRequest(
        messages=[{"role": "user", "content": PROMPT}],
        sampling=SamplingConfig(temperature=0),
        max_new_tokens=new_tokens,
        ignore_stop_tokens=True,
        constraint=json_schema(SCHEMA) if constrained else None,
    )


def tokens_per_second(events: list[Any], new_tokens: int) -> float:
    from llmcore.engine import DoneEvent, StatsEvent

    done, stats = events[-1], next(e for e in events if isinstance(e, StatsEvent))
    assert isinstance(done, DoneEvent)
    if done.reason != "length" or stats.tokens_per_s is None:
        raise RuntimeError(
            f"a bench stream ended with {done.reason} before {new_tokens} tokens: {done.error}"
        )
    return float(stats.tokens_per_s)


def single_stream(engine: Any, new_tokens: int, runs: int) -> dict[str, Any]:
    """Decode tokens/s of one stream, plain and constrained, interleaved after a warm-up of each."""
    speeds: dict[bool, list[float]] = {False: [], True: []}
    for constrained in (False, True):
        engine.generate(request(8, constrained))
    for _ in range(runs):
        for constrained in (False, True):
            speeds[constrained].append(
                tokens_per_second(engine.generate(request(new_tokens, constrained)), new_tokens)
            )
    plain, constrained_ = statistics.median(speeds[False]), statistics.median(speeds[True])
    return {
        "plain_tokens_per_second": round(plain, 1),
        "constrained_tokens_per_second": round(constrained_, 1),
        "constrained_over_plain": round(constrained_ / plain, 3),
    }


def eight_streams(engine: Any, new_tokens: int) -> dict[str, Any]:
    """Aggregate tokens/s of eight concurrent streams: none, one or all of them constrained."""
    result: dict[str, Any] = {}
    for name, constrained in (("plain", 0), ("mixed", 1), ("constrained", 8)):
        started = time.perf_counter()
        streams = [engine.submit(request(new_tokens, i < constrained)) for i in range(8)]
        for stream in streams:
            tokens_per_second(stream.events(), new_tokens)
        result[f"{name}_tokens_per_second"] = round(8 * new_tokens / (time.perf_counter() - started), 1)
    for name in ("mixed", "constrained"):
        result[f"{name}_over_plain"] = round(
            result[f"{name}_tokens_per_second"] / result["plain_tokens_per_second"], 3
        )
    return result


def grammar_parts(loaded: Any) -> dict[str, Any]:
    """Milliseconds of the grammar's own work, outside the engine."""
    import torch

    from llmcore.grammar import Grammars, json_schema

    vocab = int(loaded.model.get_input_embeddings().num_embeddings)
    started = time.perf_counter()
    grammars = Grammars(loaded.tokenizer, vocab, loaded.stop_token_ids)
    converted = time.perf_counter()
    constraint = json_schema(SCHEMA)
    state = grammars.state(constraint)
    compiled = time.perf_counter()
    state = grammars.state(constraint)
    cached = time.perf_counter()
    logits = torch.randn(vocab)
    text = '["Paris", "London", "Tokyo", "New York", "Rome", "Berlin", "Madrid", "Vienna", "Oslo", '
    masks, advances = [], []
    for token in loaded.tokenizer.encode(text, add_special_tokens=False):
        t0 = time.perf_counter()
        state.mask(logits)
        t1 = time.perf_counter()
        state.advance(token)
        advances.append(time.perf_counter() - t1)
        masks.append(t1 - t0)
    return {
        "tokenizer_conversion_ms": round(1000 * (converted - started), 1),
        "first_compile_ms": round(1000 * (compiled - converted), 2),
        "cached_compile_ms": round(1000 * (cached - compiled), 3),
        "mask_ms_median": round(1000 * statistics.median(masks), 3),
        "advance_ms_median": round(1000 * statistics.median(advances), 3),
        "steps": len(masks),
    }
