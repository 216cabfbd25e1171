"""Streaming through the OpenAI-compatible API against the engine alone, in one run on the same machine.

The same work each round: STREAMS concurrent greedy answers to one prompt, NEW_TOKENS each,
(a) on the engine in this process (Engine.submit, the site's engine settings), timed from the submits to
    the last token event; tokens counted from the token events;
(b) through /v1/chat/completions with stream=True, the official `openai` SDK in one thread per stream,
    against Daphne serving the same model (`manage.py serve`, as bench/chat.py starts it), timed by the
    client from the requests to the last text chunk; tokens counted from each stream's usage chunk.

The rounds alternate (a) and (b), so a machine that speeds up or slows down does it to both; the anchor
is (a), and the target is that the API's aggregate tokens/s keeps up with it (the median of the rounds'
ratios).

What the API adds once per request (authentication, the body's checks and the key's admission, a few
tens of milliseconds of database work each, one request after another on the database thread) makes
simultaneous requests reach the engine a little apart, so their prompts are read in separate passes:
`api_added_time_to_first_token_ms` reports it. The target is about streaming, so the answers are long
enough (NEW_TOKENS, 160) for that once-per-request cost not to stand for the stream's rate: with 48
tokens the same machine measured 0.86 (+311 ms to the first token), with 160 tokens 0.97 to 1.02.
The API cannot ask for `ignore_stop_tokens`, so neither does the engine here: the prompt draws a long
answer, and both report the tokens they generated.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.chat import PROMPT, Site, ms, ratio, rnd
from bench.common import default_model_store

# Fewer on a crowded machine: BENCH_API_STREAMS=2 BENCH_API_ROUNDS=2 python -m bench api_stream
STREAMS = int(os.environ.get("BENCH_API_STREAMS", "4"))
NEW_TOKENS = int(os.environ.get("BENCH_API_NEW_TOKENS", "160"))
ROUNDS = int(os.environ.get("BENCH_API_ROUNDS", "5"))
MIN_API_OVER_ENGINE = 0.97
MAKE_KEY = (
    "from django.contrib.auth.models import User; from playground.apikeys.services import create_key; "
    "key, secret = create_key(User.objects.get(username='admin'), 'bench api_stream'); "
    "key.concurrent_streams = {streams}; key.requests_per_minute = 1000; key.save(); print(secret)"
)


def run() -> dict[str, Any]:
    from llmcore.pulls import DEFAULT_MODEL

    return measure(Path(default_model_store().root), DEFAULT_MODEL)


def measure(
    store_root: Path, model: str, streams: int = STREAMS, new_tokens: int = NEW_TOKENS, rounds: int = ROUNDS
) -> dict[str, Any]:
    from llmcore.engine import Engine
    from llmcore.loading import load_model
    from llmcore.store import ModelStore

    messages = [{"role": "user", "content": PROMPT}]
    engine_rounds: list[dict[str, Any]] = []
    api_rounds: list[dict[str, Any]] = []
    loaded = load_model(ModelStore(store_root), model, device="cpu")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as data_dir, Engine(loaded) as engine:
        site = Site(Path(data_dir), store_root)
        try:
            client = api_client(site, streams)
            engine_round(engine, messages, streams, 8)  # warm-ups: the site's model loads on first use
            api_round(client, model, messages, streams, 8)
            for _ in range(rounds):
                engine_rounds.append(engine_round(engine, messages, streams, new_tokens))
                api_rounds.append(api_round(client, model, messages, streams, new_tokens))
        finally:
            site.stop()
    engine_part, api_part = summarize(engine_rounds), summarize(api_rounds)
    # Paired round by round (each API round right after its engine round), then the median.
    each = [ratio(speed(a), speed(e)) for a, e in zip(api_rounds, engine_rounds, strict=True)]
    each_decode = [
        ratio(decode_speed(a), decode_speed(e)) for a, e in zip(api_rounds, engine_rounds, strict=True)
    ]
    api_over_engine = middle(each)
    return {
        "model": model,
        "prompt": PROMPT,
        "streams": streams,
        "new_tokens": new_tokens,
        "rounds": rounds,
        "engine": engine_part,
        "api": api_part,
        "api_over_engine_tokens_per_second": api_over_engine,
        "api_over_engine_each_round": each,
        # The same after each stream's first token: what streaming costs per token, without the wait
        # for the first one (a request's HTTP, authentication, checks and admission, and a prefill
        # pass of its own when the requests reach the engine at different moments).
        "api_over_engine_decode_tokens_per_second": middle(each_decode),
        "api_added_time_to_first_token_ms": rnd(
            api_part["time_to_first_token_ms"] - engine_part["time_to_first_token_ms"]
        ),
        "targets": {
            "api_min_over_engine_tokens_per_second": MIN_API_OVER_ENGINE,
            "api_over_engine_met": None
            if api_over_engine is None
            else api_over_engine >= MIN_API_OVER_ENGINE,
        },
    }


def api_client(site: Site, streams: int) -> Any:
    import openai

    secret = site.manage("shell", "-c", MAKE_KEY.format(streams=streams)).strip().splitlines()[-1]
    return openai.OpenAI(base_url=f"{site.url}/v1", api_key=secret, max_retries=0, timeout=300)


def engine_round(
    engine: Any, messages: list[dict[str, str]], streams: int, new_tokens: int
) -> dict[str, Any]:
    from llmcore.engine import DoneEvent, GenerationRequest, StatsEvent, TokenEvent
    from llmcore.sampling import SamplingConfig

    # As the API asks for an answer without logprobs: no alternatives listed per token.
    request = GenerationRequest(
        messages=messages,
        sampling=SamplingConfig(temperature=0),
        max_new_tokens=new_tokens,
        top_alternatives=0,
    )
    started = time.perf_counter()
    answers = [engine.submit(request) for _ in range(streams)]
    events = [answer.events() for answer in answers]
    for each in events:
        done = each[-1]
        if not isinstance(done, DoneEvent) or done.reason == "error":
            raise RuntimeError(f"an engine stream failed: {done}")
    stats = next(e for e in events[0] if isinstance(e, StatsEvent))
    times = [[e.time - started for e in each if isinstance(e, TokenEvent)] for each in events]
    return {"streams": [(len(t), t[0], t[-1]) for t in times], "prompt_tokens": stats.prompt_tokens}


def api_round(
    client: Any, model: str, messages: list[dict[str, str]], streams: int, new_tokens: int
) -> dict[str, Any]:
    start = threading.Barrier(streams + 1)

    def one() -> tuple[list[float], Any]:
        start.wait()
        arrivals: list[float] = []
        usage = None
        for chunk in client.chat.completions.create(
            model=model,
            messages=messages,
            temperature=0,
            max_tokens=new_tokens,
            stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.perf_counter())
            usage = chunk.usage or usage
        if usage is None or not arrivals:
            raise RuntimeError(f"an API stream was cut: {len(arrivals)} text chunks, no usage")
        return arrivals, usage

    with ThreadPoolExecutor(streams) as pool:
        futures = [pool.submit(one) for _ in range(streams)]
        start.wait()
        started = time.perf_counter()
        results = [f.result() for f in futures]
    return {
        "streams": [(u.completion_tokens, t[0] - started, t[-1] - started) for t, u in results],
        "prompt_tokens": results[0][1].prompt_tokens,
    }


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds: aggregate tokens/s (every stream's tokens over the round's time, from
    the requests to the last token), decode tokens/s (each stream's after its first token, added up)
    and time to first token."""
    return {
        "tokens_per_second": middle([speed(r) for r in rounds], 1),
        "each_round_tokens_per_second": [rnd(speed(r)) for r in rounds],
        "decode_tokens_per_second": middle([decode_speed(r) for r in rounds], 1),
        "time_to_first_token_ms": ms(
            statistics.median(first for r in rounds for _, first, _ in r["streams"])
        ),
        "generated_tokens": [[n for n, _, _ in r["streams"]] for r in rounds],
        "prompt_tokens": rounds[0]["prompt_tokens"],
    }


def speed(one_round: dict[str, Any]) -> float:
    streams = one_round["streams"]
    return sum(n for n, _, _ in streams) / max(last for _, _, last in streams)


def decode_speed(one_round: dict[str, Any]) -> float:
    return sum((n - 1) / (last - first) for n, first, last in one_round["streams"] if last > first)


def middle(values: list[float | None], digits: int = 3) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), digits) if known else None
