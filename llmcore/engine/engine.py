"""The engine: one per loaded model, owning its runner, its scheduler and the thread that drives them.

`Engine.submit(request)` returns a `GenerationStream` (llmcore.engine.stream) from any thread; the
engine's own thread runs `Scheduler.step()` while anything is admitted or waiting, and sleeps otherwise.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import torch

from llmcore.engine.records import provenance
from llmcore.engine.runner import DEFAULT_THREADS, ModelRunner
from llmcore.engine.scheduler import Scheduler
from llmcore.engine.sequence import Job
from llmcore.engine.stream import GenerationStream
from llmcore.engine.types import EngineLimits, Event, GenerationRequest
from llmcore.loading import LoadedModel


class Engine:
    """Owns one loaded causal model and the thread that runs it; `submit` from any thread."""

    def __init__(
        self,
        loaded: LoadedModel,
        schedule_log_size: int = 10_000,
        packed_decode: str = "auto",
        threads: int | None = DEFAULT_THREADS,
        limits: EngineLimits | None = None,
        attention: str = "sdpa-auto",
        drafts: Callable[[str], LoadedModel] | None = None,
    ) -> None:
        """`packed_decode` "auto": on a CPU, run a copy of the model with its 4-bit-grid layers packed
        (llmcore.packed: about 2.5x faster on the default model); "off": the loaded model as it is.
        `threads`: the CPU threads of the engine's decode steps and short prefills (None: PyTorch's
        process setting, which prefills of PARALLEL_PREFILL_TOKENS or more always use).
        `limits`: maximum sequences, KV cache and prefix cache budgets (EngineLimits).
        `attention`: the attention kernel (llmcore.kernels). `drafts`: loads a draft model by catalog
        name, for speculative decoding with method "draft"."""
        if not loaded.is_causal:
            raise ValueError(f"{loaded.name} is an encoder: it does not generate text.")
        self.loaded = loaded
        self.runner = ModelRunner(loaded, packed_decode=packed_decode, threads=threads, attention=attention)
        self.limits = limits or EngineLimits()
        self.scheduler = Scheduler(self.runner, self.limits, drafts, schedule_log_size)
        self.threads = threads
        self.model = self.runner.model
        self.decode = self.runner.decode_info
        self.tokenizer = loaded.tokenizer
        self.vocab_size = self.runner.vocab_size
        self.stop_ids = self.scheduler.stop_ids
        self.context_length = self.scheduler.context_length
        self.schedule = self.scheduler.schedule
        self._incoming: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._metrics_lock = threading.Lock()
        self._next_id = 0
        self._closed = False

    # --- public ---
    def submit(self, request: GenerationRequest) -> GenerationStream:
        with self._start_lock:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._next_id += 1
            stream = GenerationStream(request, self._next_id)
            if self._thread is None:  # started lazily: an engine nobody uses costs no thread
                self._thread = threading.Thread(
                    target=self._run, name=f"engine-{self.loaded.name}", daemon=True
                )
                self._thread.start()
        self._incoming.put(Job(stream=stream))
        return stream

    def generate(self, request: GenerationRequest) -> list[Event]:
        """Submit and wait for every event (tests, scripts)."""
        return self.submit(request).events()

    def provenance(self, request: GenerationRequest, prompt_tokens: int) -> dict[str, Any]:
        """The record an answer to `request` will carry in its StatsEvent, known before it runs (for a
        caller that saves the answer as it starts); the StatsEvent's has the seed and clamp it ran with."""
        return provenance(self.runner, request, prompt_tokens, request.seed, request.max_new_tokens)

    def close(self, timeout: float = 10.0) -> None:
        with self._start_lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._incoming.put(None)
            thread.join(timeout)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def metrics(self) -> dict[str, Any]:
        """What runs now and what ran: the Engine page's and /metrics' numbers for this engine."""
        with self._metrics_lock:
            numbers = self.scheduler.metrics()
        return {
            "model": self.loaded.name,
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "device": str(self.loaded.device),
            **self.runner.describe(),
            **numbers,
        }

    # --- the thread ---
    def _run(self) -> None:
        self.runner.start_thread()
        scheduler = self.scheduler
        with torch.inference_mode():  # thread-local, so it is entered in the engine's thread itself
            while True:
                try:  # block only when idle; otherwise pick up new requests between steps
                    job = self._incoming.get(block=not scheduler.busy)
                except queue.Empty:
                    job = None
                    closing = False
                else:
                    closing = job is None
                if closing:
                    break
                if job is not None:
                    with self._metrics_lock:
                        scheduler.add(job)
                    continue  # take every waiting request before the next step
                with self._metrics_lock:
                    scheduler.step()
            with self._metrics_lock:
                scheduler.close()
