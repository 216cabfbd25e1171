"""The engine under load, all in one run on the same machine:

- one stream, and eight concurrent streams, against the engine's own single stream and against llama.cpp
  (llama-cpp-python, the same Q4_1 GGUF, the engine's decode thread count) serving the eight one after
  another; the share of the eight batched answers identical to their solo answers (float rounding in a
  batched pass can flip a near-tie);
- the fifth turn of a conversation with about 1,000 tokens of history: time to first token with the
  prefix cache and without;
- speculative decoding on an input-grounded task (repeat facts from the prompt): prompt lookup and auto
  against plain decoding, with acceptance;
- sixteen concurrent chats over WebSockets on a real Daphne: errors, p50 / p99 time to first token and
  inter-token latency.

Targets (from the engine's issue) are checked as ratios within this run: `targets` says which were met.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, default_model_store
from llmcore.experiments.batching import PROMPTS as BATCH_PROMPTS
from llmcore.experiments.speculative import COPY, FACTS

NEW_TOKENS = 64
# The Accelerate page's prompts: its experiments and this benchmark measure the same work.
PROMPTS = list(BATCH_PROMPTS)
GROUNDED = f"{FACTS}\n\n{COPY}"


def run() -> dict[str, Any]:
    from llmcore.loading import load_model
    from llmcore.pulls import DEFAULT_MODEL

    store = default_model_store()
    loaded = load_model(store, DEFAULT_MODEL, device="cpu")
    out: dict[str, Any] = {"model": DEFAULT_MODEL, "device": str(loaded.device)}
    out["forward"] = forward_part(loaded)
    out["dense"] = dense_part(loaded)
    out["batching"] = batching_part(loaded)
    out["transformers_continuous_batching"] = transformers_cb_part(loaded)
    out["prefix_cache"] = prefix_cache_part(loaded)
    out["speculative"] = speculative_part(loaded)
    out["llama_cpp"] = llama_cpp_part(loaded, DEFAULT_MODEL)
    del loaded
    out["websocket_16"] = websocket_part(Path(store.root), DEFAULT_MODEL)
    out["targets"] = targets(out)
    return out


# --- helpers -------------------------------------------------------------------------------------
def rnd(x: float | None, n: int = 1) -> float | None:
    return None if x is None else round(x, n)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def greedy(messages: list[dict[str, str]], new_tokens: int = NEW_TOKENS, **kw: Any) -> Any:
    from llmcore.engine import GenerationRequest
    from llmcore.sampling import SamplingConfig

    return GenerationRequest(
        messages=messages,
        sampling=SamplingConfig(temperature=0),
        max_new_tokens=new_tokens,
        ignore_stop_tokens=True,
        **kw,
    )


def parts(events: list[Any]) -> tuple[list[int], Any, Any]:
    from llmcore.engine import DoneEvent, StatsEvent, TokenEvent

    tokens = [e.id for e in events if isinstance(e, TokenEvent)]
    stats = next(e for e in events if isinstance(e, StatsEvent))
    done = events[-1]
    assert isinstance(done, DoneEvent)
    if done.reason == "error":
        raise RuntimeError(f"a bench request failed: {done.error}")
    return tokens, stats, done


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# --- one decode step: what the runner's hand-written parts buy ----------------------------------
def forward_part(loaded: Any) -> dict[str, Any]:
    """Milliseconds per decode step (1 and 8 rows, 100 positions each, one thread), interleaved so a busy
    machine slows every variant alike: the lean forward against transformers' own, fused projections
    against separate ones (llmcore/engine/llama_forward.py and fused.py say why they exist)."""
    import torch

    from llmcore.engine.runner import ModelRunner, own_threads
    from llmcore.packed import pack_for_decode

    runner = ModelRunner(loaded)
    fused_model = runner.model
    separate_model, _ = pack_for_decode(loaded.model, "auto")
    variants = {
        "lean_fused": (True, fused_model),
        "lean_separate": (True, separate_model),
        "transformers_fused": (False, fused_model),
        "transformers_separate": (False, separate_model),
    }
    times: dict[str, list[float]] = {f"{name}_{rows}": [] for name in variants for rows in (1, 8)}
    own_threads(1)
    with torch.inference_mode():
        for rows in (1, 8):
            runner.cache.release()
            runner.cache.reserve(rows, 256)
            for row in range(rows):
                runner.extend(row, 0, list(range(100, 200)))
            for _ in range(5):
                for name, (lean, model) in variants.items():
                    runner.lean, runner.model = lean, model
                    runner.decode([5] * rows, [100] * rows)
                    started = time.perf_counter()
                    for i in range(10):
                        runner.decode([5] * rows, [100 + i] * rows)
                    times[f"{name}_{rows}"].append((time.perf_counter() - started) / 10)
    ms = {k: rnd(1000 * statistics.median(v), 2) for k, v in times.items()}
    return {
        "step_ms": ms,
        "lean_over_transformers_1_row": ratio(ms["transformers_fused_1"], ms["lean_fused_1"]),
        "fused_over_separate_1_row": ratio(ms["lean_separate_1"], ms["lean_fused_1"]),
        "lean_over_transformers_8_rows": ratio(ms["transformers_fused_8"], ms["lean_fused_8"]),
    }


def dense_part(loaded: Any) -> dict[str, Any]:
    """Milliseconds per pass with the 4-bit kernel alone and with the bfloat16 copies the engine's layers
    keep for DENSE_ROWS rows or more (llmcore/packed.py says why): decode steps of 8, 12 and 16 rows, and
    a 512-token prompt, interleaved."""
    import torch

    from llmcore.engine.runner import ModelRunner, own_threads
    from llmcore.packed import DENSE_ROWS, PackedInt4Linear

    runner = ModelRunner(loaded)
    layers = [m for m in runner.model.modules() if isinstance(m, PackedInt4Linear)]
    copies = [m.dense for m in layers]
    times: dict[str, list[float]] = {}
    own_threads(1)
    with torch.inference_mode():
        for rows in (8, 12, 16):
            runner.cache.release()
            runner.cache.reserve(rows, 640)
            for row in range(rows):
                runner.extend(row, 0, list(range(100, 200)))
            for _ in range(3):
                for name, dense in (("int4", False), ("with_bfloat16", True)):
                    for layer, copy in zip(layers, copies, strict=True):
                        layer.dense = copy if dense else None
                    started = time.perf_counter()
                    for i in range(5):
                        runner.decode([5] * rows, [100 + i] * rows)
                    times.setdefault(f"{name}_{rows}_rows", []).append((time.perf_counter() - started) / 5)
                    if rows == 8:
                        started = time.perf_counter()
                        runner.extend(0, 0, list(range(100, 612)))
                        times.setdefault(f"{name}_prompt_512", []).append(time.perf_counter() - started)
    for layer, copy in zip(layers, copies, strict=True):
        layer.dense = copy
    ms = {k: rnd(1000 * statistics.median(v), 1) for k, v in times.items()}
    return {
        "dense_rows": DENSE_ROWS,
        "pass_ms": ms,
        "prompt_512_speedup": ratio(ms["int4_prompt_512"], ms["with_bfloat16_prompt_512"]),
        "sixteen_rows_speedup": ratio(ms["int4_16_rows"], ms["with_bfloat16_16_rows"]),
    }


# --- continuous batching -------------------------------------------------------------------------
def batching_part(loaded: Any) -> dict[str, Any]:
    from llmcore.engine import Engine, EngineLimits

    # No prefix cache here: the eight prompts share their chat-template start, and this part measures
    # batching alone.
    with Engine(loaded, limits=EngineLimits(prefix_cache_mb=0)) as engine:
        engine.generate(greedy(user("Hi"), 8))  # warm-up
        solo: list[list[int]] = []
        one_tps: list[float] = []
        for prompt in PROMPTS:
            started = time.perf_counter()
            tokens, stats, _ = parts(engine.generate(greedy(user(prompt))))
            one_tps.append(len(tokens) / (time.perf_counter() - started))
            solo.append(tokens)
        rows: dict[str, Any] = {}
        for n in (1, 2, 4, 8, 16):
            prompts = (PROMPTS * 2)[:n]
            started = time.perf_counter()
            streams = [engine.submit(greedy(user(p))) for p in prompts]
            results = [parts(s.events()) for s in streams]
            seconds = time.perf_counter() - started
            rows[str(n)] = {
                "aggregate_tokens_per_second": rnd(sum(len(t) for t, _, _ in results) / seconds),
                "per_stream_decode_tokens_per_second": rnd(
                    statistics.median([s.tokens_per_s or 0 for _, s, _ in results])
                ),
                "time_to_first_token_ms_median": rnd(
                    1000 * statistics.median([s.time_to_first_token_s or 0 for _, s, _ in results])
                ),
                "batch_size_max": max(s.batch_size_max for _, s, _ in results),
            }
            if n == 8:
                same = sum(t == alone for (t, _, _), alone in zip(results, solo, strict=True))
                rows["identical_to_solo"] = f"{same}/8"
                first_diff = [
                    next((i for i, (a, b) in enumerate(zip(t, alone, strict=False)) if a != b), None)
                    for (t, _, _), alone in zip(results, solo, strict=True)
                ]
                rows["first_differing_token"] = first_diff
    single = statistics.median(one_tps)
    return {
        "new_tokens": NEW_TOKENS,
        "single_stream_tokens_per_second": rnd(single),  # end to end: prefill included
        "by_concurrency": rows,
        "eight_over_single": ratio(rows["8"]["aggregate_tokens_per_second"], single),
        "threads": engine.threads,
        "decode": engine.decode.as_json(),
    }


def transformers_cb_part(loaded: Any) -> dict[str, Any]:
    """transformers' own continuous batching (`generate_batch`, paged cache) on the same eight prompts,
    on the float model and on the engine's packed copy: the anchor the engine's own scheduler must beat
    to be worth its code. It samples inside its own loop (no per-request generator, no token events with
    alternatives), so the engine could not use it as is even where it were faster."""
    from transformers import GenerationConfig

    from llmcore.packed import pack_for_decode

    ids = [loaded.encode_chat(user(p)) for p in PROMPTS]
    config = GenerationConfig(
        max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None
    )
    out: dict[str, Any] = {}
    packed, _ = pack_for_decode(loaded.model, "auto")
    for name, model in (("float32", loaded.model), ("packed", packed)):
        try:
            model.generate_batch(inputs=ids[:2], generation_config=config)  # warm-up
            started = time.perf_counter()
            results = model.generate_batch(inputs=ids, generation_config=config)
            seconds = time.perf_counter() - started
            tokens = sum(len(r.generated_tokens) for r in results.values())
            out[name] = {"aggregate_tokens_per_second": rnd(tokens / seconds), "generated_tokens": tokens}
        except Exception as exc:  # noqa: BLE001 - reported: it is an anchor, not the engine
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return out


# --- prefix cache --------------------------------------------------------------------------------
def prefix_cache_part(loaded: Any) -> dict[str, Any]:
    """Five turns of a chat whose first four build about 1,000 tokens of history; each turn's time to
    first token as the chat gets it (the earlier turns' blocks in the cache), then the same prompt with the
    cache not read (use_prefix_cache=False; run second, so it cannot fill the cache for the first). The
    fifth turn is asked three ways (each a new question after the same history) and the medians compared,
    so one noisy pass does not decide the ratio."""
    from llmcore.engine import Engine

    paragraph = (
        "Some context about my garden: the soil is clay, the beds face south, I grow tomatoes, beans, "
        "courgettes and herbs, and the slugs are a constant problem after rain. "
    )
    questions = [paragraph * 2 + f"Question {turn + 1}: what should I do next?" for turn in range(4)]
    fifth = ["And what about the slugs?", "Which herbs like clay?", "How often should beans be watered?"]
    history: list[dict[str, str]] = [{"role": "system", "content": "You are a patient gardening expert."}]
    ttft: dict[str, list[float]] = {"cached": [], "uncached": []}
    cached_tokens: list[int] = []
    prompt_tokens: list[int] = []

    def turn(engine: Engine, messages: list[dict[str, str]], new_tokens: int) -> tuple[Any, Any, Any]:
        _, stats, done = parts(engine.generate(greedy(messages, new_tokens)))
        _, plain, _ = parts(engine.generate(greedy(messages, 1, use_prefix_cache=False)))
        return stats, plain, done

    with Engine(loaded) as engine:
        engine.generate(greedy(user("Hi"), 4))
        for question in questions:
            history.append({"role": "user", "content": question})
            stats, plain, done = turn(engine, history, 96)
            ttft["cached"].append(stats.time_to_first_token_s)
            ttft["uncached"].append(plain.time_to_first_token_s)
            cached_tokens.append(stats.cached_prompt_tokens)
            prompt_tokens.append(stats.prompt_tokens)
            history.append({"role": "assistant", "content": done.text})
        last: dict[str, list[float]] = {"cached": [], "uncached": []}
        for question in fifth:
            stats, plain, _ = turn(engine, [*history, {"role": "user", "content": question}], 1)
            last["cached"].append(stats.time_to_first_token_s)
            last["uncached"].append(plain.time_to_first_token_s)
            if question == fifth[0]:
                ttft["cached"].append(stats.time_to_first_token_s)
                ttft["uncached"].append(plain.time_to_first_token_s)
                cached_tokens.append(stats.cached_prompt_tokens)
                prompt_tokens.append(stats.prompt_tokens)
        metrics = engine.metrics()["prefix_cache"]
    fifth_cached, fifth_uncached = (statistics.median(last[k]) for k in ("cached", "uncached"))
    return {
        "prompt_tokens_per_turn": prompt_tokens,
        "cached_prompt_tokens_per_turn": cached_tokens,
        "time_to_first_token_ms_cached": [rnd(1000 * t) for t in ttft["cached"]],
        "time_to_first_token_ms_uncached": [rnd(1000 * t) for t in ttft["uncached"]],
        "fifth_turn_ms_median_of_3": {
            "cached": rnd(1000 * fifth_cached),
            "uncached": rnd(1000 * fifth_uncached),
        },
        "fifth_turn_uncached_over_cached": ratio(fifth_uncached, fifth_cached),
        "hit_rate": rnd(metrics["hit_rate"], 3),
        "blocks": metrics["blocks"],
    }


# --- speculative decoding ------------------------------------------------------------------------
def speculative_part(loaded: Any) -> dict[str, Any]:
    from llmcore.engine import Engine, EngineLimits, SpeculativeConfig

    out: dict[str, Any] = {"task": "copy a 90-word log from the prompt, greedy, 96 new tokens"}
    with Engine(loaded, limits=EngineLimits(prefix_cache_mb=0)) as engine:
        engine.generate(greedy(user("Hi"), 8))

        def timed(spec: SpeculativeConfig) -> tuple[float, Any, list[int]]:
            started = time.perf_counter()
            tokens, stats, _ = parts(engine.generate(greedy(user(GROUNDED), 96, speculative=spec)))
            return len(tokens) / (time.perf_counter() - started), stats, tokens

        plain_tps, _, plain_tokens = timed(SpeculativeConfig())
        out["plain_tokens_per_second"] = rnd(plain_tps)
        for method, k in (("prompt_lookup", 2), ("prompt_lookup", 4), ("prompt_lookup", 8), ("auto", 4)):
            tps, stats, tokens = timed(SpeculativeConfig(method=method, num_tokens=k))
            out[f"{method}_k{k}"] = {
                "tokens_per_second": rnd(tps),
                "over_plain": ratio(tps, plain_tps),
                "identical_to_plain": tokens == plain_tokens,
                **stats.speculative,
            }
        # on a task with nothing to copy, auto must not cost much
        free = user("Invent a new board game and explain its rules.")
        started = time.perf_counter()
        parts(engine.generate(greedy(free, 96)))
        free_plain = 96 / (time.perf_counter() - started)
        started = time.perf_counter()
        _, stats, _ = parts(engine.generate(greedy(free, 96, speculative=SpeculativeConfig(method="auto"))))
        free_auto = 96 / (time.perf_counter() - started)
        out["auto_on_free_text"] = {"over_plain": ratio(free_auto, free_plain), **stats.speculative}
    return out


# --- llama.cpp -----------------------------------------------------------------------------------
def llama_cpp_part(loaded: Any, model: str) -> dict[str, Any]:
    """llama.cpp on the same GGUF in a child process, one thread (the engine's single-stream decode
    count) and all threads, serving the eight prompts one after another."""
    import importlib.util
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from llmcore.pulls import PULLABLE, fetch_model_file

    if importlib.util.find_spec("llama_cpp") is None:
        return {"skipped": "llama-cpp-python is not installed: pip install -e '.[bench]'"}
    gguf = fetch_model_file(PULLABLE[model], ROOT / "var" / "cache" / "downloads", print)
    tokenizer = loaded.tokenizer
    prompts = [
        tokenizer.apply_chat_template(user(p), add_generation_prompt=True, tokenize=False) for p in PROMPTS
    ]
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    out: dict[str, Any] = {}
    for count in sorted({1, threads}):
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            try:
                out[f"threads_{count}"] = pool.submit(
                    llama_cpp_sequential, str(gguf), prompts, count
                ).result()
            except Exception as exc:  # noqa: BLE001 - a crash in native code is reported, not fatal
                out[f"threads_{count}"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def llama_cpp_sequential(gguf: str, prompts: list[str], threads: int) -> dict[str, Any]:
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    singles: list[float] = []
    total_tokens = 0
    started_all = time.perf_counter()
    for i, text in enumerate([prompts[0], *prompts]):  # the first is a warm-up
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()
        started = time.perf_counter()
        count = 0
        for _ in llm.generate(ids, temp=0.0, repeat_penalty=1.0, reset=True):
            count += 1
            if count >= NEW_TOKENS:
                break
        if i == 0:
            started_all = time.perf_counter()
            continue
        singles.append(count / (time.perf_counter() - started))
        total_tokens += count
    seconds = time.perf_counter() - started_all
    llm.close()
    return {
        "single_stream_tokens_per_second": rnd(statistics.median(singles)),
        "eight_sequential_tokens_per_second": rnd(total_tokens / seconds),
    }


# --- sixteen chats over WebSockets ---------------------------------------------------------------
def websocket_part(store_root: Path, model: str) -> dict[str, Any]:
    try:
        import websockets  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"the websockets client is not installed ({exc})"}
    from bench.chat import Site

    with tempfile.TemporaryDirectory(prefix="bench-engine-") as data_dir:
        site = Site(Path(data_dir), store_root)
        try:
            cookie = site.session_cookie()
            ws_url = site.url.replace("http://", "ws://") + "/ws/chat/"
            return asyncio.run(sixteen_chats(ws_url, site.url, cookie, model))
        finally:
            site.stop()


async def sixteen_chats(ws_url: str, origin: str, cookie: str, model: str) -> dict[str, Any]:
    import websockets

    async def chat(i: int) -> dict[str, Any]:
        async with websockets.connect(ws_url, origin=origin, additional_headers={"Cookie": cookie}) as ws:
            frame = {
                "type": "send",
                "conversation": None,
                "model": model,
                "content": PROMPTS[i % len(PROMPTS)],
                "settings": {"temperature": 0.7, "seed": i, "max_new_tokens": 48},
            }
            sent = time.perf_counter()
            await ws.send(json.dumps(frame))
            times: list[float] = []
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 300))
                if reply["type"] == "token":
                    times.append(time.perf_counter())
                elif reply["type"] in ("done", "error"):
                    break
            ok = reply["type"] == "done" and reply["reason"] != "error"
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            return {"ok": ok, "ttft": times[0] - sent if times else None, "gaps": gaps, "tokens": len(times)}

    async with websockets.connect(ws_url, origin=origin, additional_headers={"Cookie": cookie}) as ws:
        warm = {"type": "send", "conversation": None, "model": model, "content": "Hi",
                "settings": {"max_new_tokens": 4}}  # fmt: skip
        await ws.send(json.dumps(warm))
        while json.loads(await asyncio.wait_for(ws.recv(), 300))["type"] not in ("done", "error"):
            pass
    started = time.perf_counter()
    results = await asyncio.gather(*(chat(i) for i in range(16)), return_exceptions=True)
    seconds = time.perf_counter() - started
    good = [r for r in results if isinstance(r, dict) and r["ok"]]
    ttfts = [r["ttft"] for r in good if r["ttft"] is not None]
    gaps = [g for r in good for g in r["gaps"]]
    return {
        "chats": 16,
        "errors": 16 - len(good),
        "aggregate_tokens_per_second": rnd(sum(r["tokens"] for r in good) / seconds),
        "time_to_first_token_ms": {
            "p50": rnd(1000 * (percentile(ttfts, 50) or 0)),
            "p99": rnd(1000 * (percentile(ttfts, 99) or 0)),
        },  # fmt: skip
        "inter_token_ms": {
            "p50": rnd(1000 * (percentile(gaps, 50) or 0)),
            "p99": rnd(1000 * (percentile(gaps, 99) or 0)),
        },  # fmt: skip
    }


# --- targets -------------------------------------------------------------------------------------
def targets(out: dict[str, Any]) -> dict[str, Any]:
    batching = out["batching"]
    llama = out["llama_cpp"].get("threads_1", {})
    eight = batching["by_concurrency"]["8"]["aggregate_tokens_per_second"]
    checks = {
        "eight_streams_at_least_3x_single": (batching["eight_over_single"], 3.0),
        "eight_streams_at_least_2x_llama_cpp_sequential": (
            ratio(eight, llama.get("eight_sequential_tokens_per_second")),
            2.0,
        ),
        "single_stream_at_least_0.6x_llama_cpp": (
            ratio(batching["single_stream_tokens_per_second"], llama.get("single_stream_tokens_per_second")),
            0.6,
        ),
        "fifth_turn_ttft_at_least_5x_faster_with_prefix_cache": (
            out["prefix_cache"]["fifth_turn_uncached_over_cached"],
            5.0,
        ),
        "auto_speculation_never_below_0.95x_plain": (
            min(
                out["speculative"]["auto_k4"]["over_plain"] or 0,
                out["speculative"]["auto_on_free_text"]["over_plain"] or 0,
            ),
            0.95,
        ),  # fmt: skip
        "sixteen_websocket_chats_without_errors": (
            16 - out["websocket_16"].get("errors", 16) if "errors" in out["websocket_16"] else None,
            16,
        ),
    }
    return {
        name: {"value": v, "target": t, "met": v is not None and v >= t} for name, (v, t) in checks.items()
    }
