"""The generation engine: one per loaded model, owning the model and a scheduler thread.

`Engine.submit(request)` returns a `GenerationStream` of events: one `TokenEvent` per generated token,
then one `StatsEvent`, then exactly one `DoneEvent`. The stream is iterable from a thread (`for`) and
from asyncio (`async for`, what the Channels consumer uses); `cancel()` stops it before its next token.

Scheduling (in the spirit of litgpt's `generate/base.py` and nanoGPT's `generate`, one token per
forward pass over a KV cache): every active stream keeps its own KV cache, and the scheduler thread
round-robins one step (a prefill, or one decode step) per active stream, so two users chatting at once
both see tokens flowing. `_step(batch)` is the single place that runs the model: batching the streams
into one forward pass, reusing the KV cache of a shared prefix and speculative decoding go there later,
and nothing outside this module needs to change.

Each request samples with its own seeded `torch.Generator`, so the same request and seed give the same
tokens whatever else runs at the same time.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import queue
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from llmcore.encoding import encode_chat
from llmcore.loading import LoadedModel
from llmcore.packed import pack_for_decode
from llmcore.sampling import SamplingConfig, generator_for, warp
from llmcore.tokenize import token_display

STOP_REASONS = ("stop", "stop_sequence", "length", "cancelled", "error")
# CPU threads of an engine's scheduler thread. One, because PyTorch's CPU parallelism (OpenMP) wakes its
# workers slowly whenever the process holds more OpenMP threads than it has cores, which it does as soon
# as a second Python thread has run parallel work (a web server's request threads, the loading thread):
# measured on a 2-core machine, a decode step of the default model from a non-main thread took 25 ms
# with 2 threads and 15 ms with 1 (float32: 39 and 35 ms). ENGINE_THREADS raises it (`make bench` tells).
DEFAULT_THREADS = 1
# A prefill this long is big enough work to be worth waking the pool: it runs on the process's threads.
# Measured there (default model, 2 cores), time to first token staying at 1 thread / switching to 2:
# 128 tokens 208 / 245 ms, 256 tokens 436 / 393 ms, 512 tokens 951 / 713 ms, 1,000 tokens 2.10 / 1.33 s.
PARALLEL_PREFILL_TOKENS = 192


# --- requests and events ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. Give either `prompt_ids` or `messages` (rendered through the chat template)."""

    prompt_ids: Sequence[int] | None = None
    messages: Sequence[dict[str, str]] | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int | None = None  # None: the engine draws one and reports it in the stats
    max_new_tokens: int = 256  # clamped so prompt + new tokens never exceed the context length
    stop_sequences: Sequence[str] = ()
    top_alternatives: int = 5  # alternatives listed per token event
    best_of: int = 1  # generate N candidates, keep the best mean log-probability
    num_beams: int = 1  # > 1: deterministic beam search
    ignore_stop_tokens: bool = False  # run to max_new_tokens (benchmarks); end-of-turn tokens are kept

    def __post_init__(self) -> None:
        if (self.prompt_ids is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt_ids or messages")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.best_of < 1 or self.num_beams < 1:
            raise ValueError("best_of and num_beams must be >= 1")
        if self.best_of > 1 and self.num_beams > 1:
            raise ValueError("choose best_of or beam search, not both")
        if self.top_alternatives < 0:
            raise ValueError("top_alternatives must be >= 0")
        if any(not s for s in self.stop_sequences):
            raise ValueError("stop sequences must not be empty")


@dataclass(frozen=True)
class TokenEvent:
    index: int  # position among the generated tokens
    id: int
    text: str  # the text to append; "" while bytes of a character or a possible stop sequence wait
    logprob: float  # of this token under the distribution it was drawn from (after the sampler)
    prob: float
    model_logprob: float  # under the model's own softmax, before penalty and filters
    alternatives: list[tuple[int, str, float]]  # (id, label, prob) most likely first, after the sampler
    time: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class StatsEvent:
    prompt_tokens: int
    generated_tokens: int
    time_to_first_token_s: float | None
    tokens_per_s: float | None  # decode speed: tokens after the first over the time after the first
    seed: int
    max_new_tokens: int  # after clamping
    max_new_tokens_requested: int
    clamped: bool  # True when the context length cut max_new_tokens
    context_length: int
    provenance: dict[str, Any]  # model, sampler settings, seed...: what a saved message records


@dataclass(frozen=True)
class Candidate:
    text: str
    mean_logprob: float
    reason: str
    seed: int
    token_ids: list[int]


@dataclass(frozen=True)
class DoneEvent:
    reason: str  # one of STOP_REASONS
    text: str  # the whole answer
    error: str | None = None
    tail: str = ""  # text of Done.text not carried by any token event (held back when the stream ended)
    candidates: list[Candidate] = field(default_factory=list)  # best_of: every candidate, chosen first


Event = TokenEvent | StatsEvent | DoneEvent


# --- the stream ------------------------------------------------------------------------------------
class GenerationStream:
    """Events of one request. Iterate it once, from a thread or from one asyncio loop."""

    def __init__(self, request: GenerationRequest, stream_id: int) -> None:
        self.request = request
        self.id = stream_id
        self.submitted_at = time.perf_counter()
        self._sync: queue.Queue[Event] = queue.Queue()
        self._async: tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]] | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._closed = False  # the Done event was pushed

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """No token event is delivered after this returns; the stream ends with reason "cancelled"."""
        with self._lock:
            self._cancelled = True

    def _push(self, event: Event) -> bool:
        """Called by the scheduler thread. Returns False (and drops the token) once cancelled."""
        with self._lock:
            if self._closed or (self._cancelled and isinstance(event, TokenEvent)):
                return False
            self._closed = isinstance(event, DoneEvent)
            if self._async is None:
                self._sync.put(event)
                return True
            loop, aqueue = self._async
        try:  # hand the event to the consumer's loop; an asyncio.Queue is not thread-safe
            loop.call_soon_threadsafe(aqueue.put_nowait, event)
        except RuntimeError:  # the consumer's loop is closed: nobody listens any more
            self.cancel()
        return True

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self._sync.get()
            if self._cancelled and isinstance(event, TokenEvent):
                continue  # queued before the cancel, but the consumer asked for no more tokens
            yield event
            if isinstance(event, DoneEvent):
                return

    def events(self) -> list[Event]:
        return list(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        aqueue: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:  # switch delivery to this loop, moving what already arrived
            while not self._sync.empty():
                aqueue.put_nowait(self._sync.get_nowait())
            self._async = (asyncio.get_running_loop(), aqueue)
        try:
            while True:
                event = await aqueue.get()
                if self._cancelled and isinstance(event, TokenEvent):
                    continue
                yield event
                if isinstance(event, DoneEvent):
                    return
        except (asyncio.CancelledError, GeneratorExit):
            self.cancel()  # the consumer went away (a closed WebSocket): stop spending compute
            raise


# --- scheduler state -------------------------------------------------------------------------------
@dataclass
class _Sequence:
    """One sequence being decoded: its tokens, KV cache, generator and text bookkeeping."""

    seed: int
    generator: torch.Generator
    prompt: list[int]
    generated: list[int] = field(default_factory=list)
    past: Any = None  # the transformers cache; None until prefilled
    logits: torch.Tensor | None = None  # (V,) for the next token
    model_logprobs: list[float] = field(default_factory=list)
    emitted: str = ""  # text already carried by token events
    text: str = ""  # the answer so far (cut at a stop sequence)
    reason: str | None = None
    events: list[TokenEvent] = field(default_factory=list)  # best_of buffers events until it chooses


@dataclass
class _Job:
    stream: GenerationStream
    prompt: list[int] = field(default_factory=list)
    seed: int = 0
    max_new: int = 0
    context_length: int = 0
    seqs: list[_Sequence] = field(default_factory=list)
    first_token_at: float | None = None
    last_token_at: float | None = None
    prepared: bool = False
    shown: str = ""  # the text token events delivered so far


class Engine:
    """Owns one loaded causal model and the thread that runs it; `submit` from any thread."""

    def __init__(
        self,
        loaded: LoadedModel,
        schedule_log_size: int = 10_000,
        packed_decode: str = "auto",
        threads: int | None = DEFAULT_THREADS,
    ) -> None:
        """`packed_decode` "auto": on a CPU, run a copy of the model with its 4-bit-grid layers packed
        (llmcore.packed: about 2.5x faster on the default model); "off": the loaded model as it is.
        `threads`: the CPU threads of the engine's decode steps and short prefills (None: PyTorch's
        process setting, which prefills of PARALLEL_PREFILL_TOKENS or more always use)."""
        if not loaded.is_causal:
            raise ValueError(f"{loaded.name} is an encoder: it does not generate text.")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self.loaded = loaded
        self.model, self.decode = pack_for_decode(loaded.model, packed_decode)
        self.tokenizer = loaded.tokenizer
        self.stop_ids = set(loaded.stop_token_ids)
        self.vocab_size = int(self.model.get_input_embeddings().num_embeddings)
        # A prompt-tuned model's virtual tokens take positions too: what is left is the text's.
        self.context_length = _context_length(loaded) - loaded.virtual_tokens
        # (stream id, token index) in the order tokens were produced: lets tests see the interleaving.
        self.schedule: collections.deque[tuple[int, int]] = collections.deque(maxlen=schedule_log_size)
        self._incoming: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
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
        self._incoming.put(_Job(stream=stream))
        return stream

    def generate(self, request: GenerationRequest) -> list[Event]:
        """Submit and wait for every event (tests, scripts)."""
        return self.submit(request).events()

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

    # --- the scheduler loop ---
    def _run(self) -> None:
        active: list[_Job] = []
        self._process_threads = torch.get_num_threads()  # this new thread starts at the process setting
        self._threads_now = self._process_threads
        with torch.inference_mode():  # thread-local, so it is entered in the scheduler thread itself
            while True:
                try:  # block only when idle; otherwise pick up new requests between rounds
                    job = self._incoming.get(block=not active)
                    if job is None:
                        break
                    active.append(job)
                    continue  # drain every waiting request before the next round
                except queue.Empty:
                    pass
                # One round: every active job advances one step, so concurrent streams interleave.
                for job in list(active):
                    if self._advance(job):
                        active.remove(job)
        for job in active:  # closing: end what is still running
            self._finish(job, "cancelled")

    def _advance(self, job: _Job) -> bool:
        """One step of one job; True when it is finished. An error ends this job, not the scheduler."""
        try:
            if job.stream.cancelled:
                self._finish(job, "cancelled")
                return True
            if not job.prepared:
                self._prepare(job)
                if job.stream.request.num_beams > 1:  # beam search runs to its end in one step
                    self._use_threads(1)  # mostly decode steps
                    self._beam_search(job)
                    return True
            running = [s for s in job.seqs if s.reason is None]
            self._step(job, running)
            if all(s.reason is not None for s in job.seqs):
                self._finish(job, None)
                return True
            return False
        except Exception as exc:  # noqa: BLE001 - reported to the stream's consumer
            self._finish(job, "error", f"{type(exc).__name__}: {exc}")
            return True

    def _prepare(self, job: _Job) -> None:
        request = job.stream.request
        if request.messages is not None:
            if not self.loaded.has_chat_template:
                raise ValueError(f"{self.loaded.name} has no chat template; send prompt token ids.")
            job.prompt = encode_chat(self.tokenizer, list(request.messages))
        else:
            job.prompt = [int(i) for i in request.prompt_ids or ()]
        if not job.prompt:
            raise ValueError("the prompt is empty")
        bad = [i for i in job.prompt if not 0 <= i < self.vocab_size]
        if bad:  # checked here: on a GPU an out-of-range id is a device assert that poisons the context
            raise ValueError(f"token id {bad[0]} is outside the vocabulary (size {self.vocab_size})")
        room = self.context_length - len(job.prompt)
        if room < 1:
            raise ValueError(
                f"the prompt ({len(job.prompt)} tokens) fills the context ({self.context_length})"
            )
        job.max_new = min(request.max_new_tokens, room)
        job.context_length = self.context_length
        job.seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        # best_of candidate i samples with seed + i, so each candidate is reproducible on its own.
        job.seqs = [
            _Sequence(seed=job.seed + i, generator=generator_for(job.seed + i), prompt=list(job.prompt))
            for i in range(request.best_of)
        ]
        job.prepared = True

    def _step(self, job: _Job, batch: list[_Sequence]) -> None:
        """Run the model for `batch` and sample one token for each sequence.

        The seam for later work: today each sequence gets its own forward pass over its own KV cache
        (a prefill the first time). Batching streams into one padded forward pass, sharing a cached
        prefix and speculative decoding replace the body of this method; its contract - every sequence
        in `batch` gets exactly one new token, or a finish reason - stays.
        """
        device = self.loaded.device
        for seq in batch:
            if seq.past is None:  # prefill: the whole prompt at once
                ids = torch.tensor([seq.prompt], device=device)  # (1, T)
            else:  # decode: only the newest token; the cache holds the rest
                ids = torch.tensor([[seq.generated[-1]]], device=device)  # (1, 1)
            self._use_threads(ids.shape[1])
            # `cache` is the name transformers 5 uses for past_key_values (the old name is deprecated).
            # A soft prompt goes in once, at the prefill; the cache then holds it like any other prefix.
            inputs = self.loaded.model_inputs(ids) if seq.past is None else {"input_ids": ids}
            out = self.model(**inputs, cache=seq.past, use_cache=True, logits_to_keep=1)
            seq.past = out.cache
            seq.logits = out.logits[0, -1].float().cpu()  # (V,)
            self._sample(job, seq)

    def _use_threads(self, tokens: int) -> None:
        """The thread count for a forward pass over `tokens` new tokens (see PARALLEL_PREFILL_TOKENS)."""
        if self.threads is None:
            return
        wide = max(self._process_threads, self.threads)
        wanted = wide if tokens >= PARALLEL_PREFILL_TOKENS else self.threads
        if wanted != self._threads_now:
            own_threads(wanted, self._process_threads)
            self._threads_now = wanted

    def _sample(self, job: _Job, seq: _Sequence) -> None:
        request = job.stream.request
        config = request.sampling
        assert seq.logits is not None
        final = warp(seq.logits, config, seq.prompt + seq.generated)  # (V,) after penalty and filters
        if config.greedy:
            token = int(torch.argmax(final))
        else:
            token = int(torch.multinomial(torch.softmax(final, dim=-1), 1, generator=seq.generator))
        self.schedule.append((job.stream.id, len(seq.generated)))
        if token in self.stop_ids and not request.ignore_stop_tokens:
            seq.reason = "stop"  # the end-of-turn token ends the answer and is not part of it
            return
        logprobs = torch.log_softmax(final, dim=-1)
        model_logprob = float(torch.log_softmax(seq.logits, dim=-1)[token])
        seq.generated.append(token)
        seq.model_logprobs.append(model_logprob)
        if len(seq.generated) >= job.max_new:
            seq.reason = "length"
        delta = self._update_text(seq, request.stop_sequences)
        # Greedy's sampler distribution is one-hot; its alternatives come from the model's (penalized)
        # distribution instead, which is what the token inspector needs to be useful.
        shown = warp(seq.logits, dataclasses.replace(config, temperature=1.0)) if config.greedy else final
        event = TokenEvent(
            index=len(seq.generated) - 1,
            id=token,
            text=delta,
            logprob=float(logprobs[token]),
            prob=float(logprobs[token].exp()),
            model_logprob=model_logprob,
            alternatives=self._alternatives(shown, request.top_alternatives),
        )
        now = time.perf_counter()
        job.first_token_at = job.first_token_at or now
        job.last_token_at = now
        if len(job.seqs) > 1:
            seq.events.append(event)
        elif not self._deliver(job, event):  # cancelled while this token was computed
            seq.reason = "cancelled"

    def _deliver(self, job: _Job, event: TokenEvent) -> bool:
        if not job.stream._push(event):
            return False
        job.shown += event.text
        return True

    def _update_text(self, seq: _Sequence, stops: Sequence[str]) -> str:
        """Decode the answer so far and return the text that can safely be shown now.

        Held back: a trailing replacement character (the first bytes of a character split across
        tokens) and a tail that could be the start of a stop sequence (it must never be shown).
        """
        full = self.tokenizer.decode(seq.generated, skip_special_tokens=False)
        cut = min((i for i in (full.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            seq.reason = "stop_sequence"
            full = full[:cut]
        seq.text = full
        safe = len(full)
        if seq.reason is None:  # a finished sequence flushes everything
            if full.endswith("\ufffd"):
                safe = len(full.rstrip("\ufffd"))
            for s in stops:
                for n in range(min(len(s) - 1, len(full)), 0, -1):
                    if full.endswith(s[:n]):
                        safe = min(safe, len(full) - n)
                        break
        safe = max(safe, len(seq.emitted))
        delta = full[len(seq.emitted) : safe]
        seq.emitted += delta
        return delta

    def _alternatives(self, logits: torch.Tensor, n: int) -> list[tuple[int, str, float]]:
        if n == 0:
            return []
        probs = torch.softmax(logits, dim=-1)
        top = torch.topk(probs, min(n, int(torch.isfinite(logits).sum()) or 1))
        return [(int(i), self._label(int(i)), float(p)) for p, i in zip(top.values, top.indices, strict=True)]

    def _label(self, token_id: int) -> str:
        try:
            return token_display(self.tokenizer, token_id)
        except Exception:  # noqa: BLE001 - a slow tokenizer without a backend: plain decode
            return str(self.tokenizer.decode([token_id]))

    def _beam_search(self, job: _Job) -> None:
        """Deterministic beam search, delegated to transformers `generate` (a tested implementation of
        beam bookkeeping); it runs to the end in one scheduler step, then the tokens are streamed with
        their probabilities from one forward pass over the result. The other streams wait meanwhile."""
        request = job.stream.request
        prompt = torch.tensor([job.prompt], device=self.loaded.device)
        eos = [] if request.ignore_stop_tokens else sorted(self.stop_ids)
        inputs = self.loaded.model_inputs(prompt)
        first = next(iter(inputs.values()))
        out = self.model.generate(
            **inputs,
            attention_mask=torch.ones(first.shape[:2], dtype=torch.long, device=first.device),
            num_beams=request.num_beams,
            do_sample=False,
            max_new_tokens=job.max_new,
            repetition_penalty=request.sampling.repetition_penalty,
            eos_token_id=eos or None,
            pad_token_id=self.loaded.model.generation_config.pad_token_id,
        )
        # generate() returns the prompt ids before the new ones, but only the new ones for embeddings.
        new = [int(t) for t in out[0, len(job.prompt) if "input_ids" in inputs else 0 :]]
        seq = job.seqs[0]
        stopped = next((k for k, t in enumerate(new) if t in eos), None)
        if stopped is not None:
            new = new[:stopped]
        if new:
            full_ids = torch.tensor([job.prompt + new], device=self.loaded.device)
            inputs = self.loaded.model_inputs(full_ids)
            logits = self.model(**inputs).logits[0, self.loaded.virtual_tokens + len(job.prompt) - 1 : -1]
            logits = logits.float().cpu()
        for k, token in enumerate(new):
            seq.logits = logits[k]
            logprob = float(torch.log_softmax(logits[k], dim=-1)[token])
            seq.generated.append(token)
            seq.model_logprobs.append(logprob)
            delta = self._update_text(seq, request.stop_sequences)
            event = TokenEvent(k, token, delta, logprob, math.exp(logprob), logprob,
                               self._alternatives(logits[k], request.top_alternatives))  # fmt: skip
            job.first_token_at = job.first_token_at or event.time
            job.last_token_at = event.time
            self.schedule.append((job.stream.id, k))
            if not self._deliver(job, event):
                seq.reason = "cancelled"
            if seq.reason is not None:
                break
        if seq.reason is None:
            seq.reason = "stop" if stopped is not None else "length"
        self._finish(job, None)

    def _finish(self, job: _Job, reason: str | None, error: str | None = None) -> None:
        """Push the stats and the one Done event. reason None: take it from the (chosen) sequence."""
        stream = job.stream
        request = stream.request
        candidates: list[Candidate] = []
        chosen = job.seqs[0] if job.seqs else None
        if len(job.seqs) > 1 and reason is None:
            # best_of: streamed after choosing, so the consumer sees one answer, not N interleaved ones.
            ranked = sorted(job.seqs, key=lambda s: (-_mean(s.model_logprobs), s.seed))
            chosen = ranked[0]
            candidates = [
                Candidate(s.text, _mean(s.model_logprobs), s.reason or "length", s.seed, list(s.generated))
                for s in ranked
            ]
            for event in chosen.events:
                if not self._deliver(job, event):
                    reason = "cancelled"
                    break
        if stream.cancelled:
            reason = "cancelled"
        if reason is None:
            reason = chosen.reason if chosen and chosen.reason else "length"
        # The answer is what the chosen sequence produced; a cancelled or failed stream's answer is
        # what its consumer was shown. `tail` is the held-back end no token event carried.
        finished = reason not in ("cancelled", "error") and chosen is not None
        text = chosen.text if finished and chosen is not None else job.shown
        tail = text[len(job.shown) :] if text.startswith(job.shown) else ""
        generated = len(chosen.generated) if chosen else 0
        ttft = job.first_token_at - stream.submitted_at if job.first_token_at else None
        decode_s = (job.last_token_at or 0) - (job.first_token_at or 0)
        tps = (generated - 1) / decode_s if generated > 1 and decode_s > 0 else None
        requested = request.max_new_tokens
        stream._push(
            StatsEvent(
                prompt_tokens=len(job.prompt),
                generated_tokens=generated,
                time_to_first_token_s=ttft,
                tokens_per_s=tps,
                seed=job.seed,
                max_new_tokens=job.max_new or requested,
                max_new_tokens_requested=requested,
                clamped=bool(job.max_new) and job.max_new < requested,
                context_length=self.context_length,
                provenance={
                    "model": self.loaded.name,
                    "prompt_tokens": len(job.prompt),
                    "seed": job.seed,
                    "sampling": dataclasses.asdict(request.sampling),
                    "max_new_tokens": job.max_new or requested,
                    "stop_sequences": list(request.stop_sequences),
                    "best_of": request.best_of,
                    "num_beams": request.num_beams,
                    "decode": self.decode.as_json(),
                },
            )
        )
        stream._push(DoneEvent(reason=reason, text=text, error=error, tail=tail, candidates=candidates))
        for seq in job.seqs:  # free the KV caches now, not when the stream object goes away
            seq.past = None


def own_threads(count: int, process: int | None = None) -> None:
    """Give the calling thread `count` CPU threads for PyTorch's parallel work, leaving other threads'.

    torch.set_num_threads sets the calling thread's OpenMP and MKL counts, and also the default that
    threads touching PyTorch for the first time take; a short-lived thread puts that default back to
    `process` (default: the calling thread's count before, right for a thread that has not changed it).
    """
    process = torch.get_num_threads() if process is None else process
    torch.set_num_threads(count)
    if count != process:
        restore = threading.Thread(target=torch.set_num_threads, args=(process,), name="threads-default")
        restore.start()
        restore.join()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else -math.inf


def _context_length(loaded: LoadedModel) -> int:
    """The model's context length: its position table, else what the tokenizer says."""
    config = loaded.model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(loaded.tokenizer, "model_max_length", 0) or 0
    return int(value) if 0 < int(value) < 10**7 else 2048
