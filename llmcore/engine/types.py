"""What goes into the engine and what comes out: requests, limits and the events of a stream.

A stream yields `QueuedEvent`s while it waits for room, `PrefillEvent`s while a long prompt is read, then
one `TokenEvent` per generated token, then one `StatsEvent`, then exactly one `DoneEvent`. Every field is
typed: a token's alternatives are `Alternative` records, a stream's end is a `FinishReason`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from llmcore.grammar import Constraint, GrammarError
from llmcore.sampling import SamplingConfig


class FinishReason(enum.StrEnum):
    """Why a stream ended. A StrEnum, so `reason == "stop"` and JSON both read it as its value."""

    STOP = "stop"  # the model's end-of-turn token
    STOP_SEQUENCE = "stop_sequence"  # one of the request's stop sequences (it is not part of the text)
    LENGTH = "length"  # max_new_tokens, or the context was full
    CANCELLED = "cancelled"
    ERROR = "error"


STOP_REASONS = tuple(r.value for r in FinishReason)
SPECULATIVE_METHODS = ("off", "prompt_lookup", "draft", "auto")


@dataclass(frozen=True)
class SpeculativeConfig:
    """Speculative decoding: a cheap proposer guesses `num_tokens` tokens, the model checks
    them in one forward pass and keeps the longest run the accept/reject rule allows.

    method "prompt_lookup": continue an n-gram of the answer's end that already occurred in the prompt (no
    second model); "draft": a smaller model with the same tokenizer (`draft_model`, a catalog name) guesses;
    "auto": prompt lookup, switched off while it does not pay (its measured gain is below 1)."""

    method: str = "off"
    num_tokens: int = 4
    draft_model: str = ""
    ngram: int = 3  # prompt lookup: the longest n-gram matched (it falls back to shorter ones down to 1)

    def __post_init__(self) -> None:
        if self.method not in SPECULATIVE_METHODS:
            raise ValueError(f"speculative method is one of {', '.join(SPECULATIVE_METHODS)}")
        if not 1 <= self.num_tokens <= 16:
            raise ValueError("speculative num_tokens must be between 1 and 16")
        if self.method == "draft" and not self.draft_model:
            raise ValueError("speculative method 'draft' needs a draft_model")
        if not 1 <= self.ngram <= 8:
            raise ValueError("prompt lookup ngram must be between 1 and 8")

    @property
    def on(self) -> bool:
        return self.method != "off"


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
    speculative: SpeculativeConfig = field(default_factory=SpeculativeConfig)
    use_prefix_cache: bool = True  # False: compute the whole prompt even when its start is cached
    # Structured output (llmcore.grammar): every token is drawn among those the grammar allows, and the
    # answer ends when the grammar is complete. Each sequence (best_of's candidates) has its own state.
    constraint: Constraint | None = None
    # The prompt's last `answer_start` tokens begin the answer (a continued answer): the grammar takes them.
    answer_start: int = 0

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
        if self.speculative.on and (self.best_of > 1 or self.num_beams > 1):
            raise ValueError("speculative decoding runs one sequence: not with best_of or beam search")
        if not 0 <= self.answer_start <= len(self.prompt_ids or ()):
            raise ValueError("answer_start counts prompt_ids: from 0 to their number")
        if self.constraint is not None and (self.speculative.on or self.num_beams > 1):
            # Both would need the grammar's state at every guessed position or beam, forked and rolled
            # back; refused rather than silently turned off, so a caller knows what ran.
            raise GrammarError(
                "Structured output (a JSON schema or tools) decodes one token at a time: turn speculative "
                "decoding off and use one beam (best-of-N works)."
            )


@dataclass(frozen=True)
class EngineLimits:
    """The engine's explicit limits. When they are reached, new requests wait in order (QueuedEvent)."""

    max_sequences: int = 16  # sequences decoded together (each best_of candidate is one)
    kv_cache_mb: float = 1024.0  # the running sequences' KV cache
    prefix_cache_mb: float = 256.0  # KV blocks of finished prompts kept for reuse (0: no prefix cache)
    prefill_chunk: int = 256  # prompt tokens computed per step while other streams decode
    max_waiting: int = 256  # requests waiting beyond this are refused

    def __post_init__(self) -> None:
        if self.max_sequences < 1:
            raise ValueError("max_sequences must be at least 1")
        if self.kv_cache_mb <= 0 or self.prefix_cache_mb < 0:
            raise ValueError("the KV cache budget must be > 0 and the prefix cache's >= 0")
        if self.prefill_chunk < 16:
            raise ValueError("prefill_chunk must be at least 16 tokens")
        if self.max_waiting < 0:
            raise ValueError("max_waiting must be >= 0")


class Alternative(NamedTuple):
    """One candidate for a position, after the sampler: id, its display label, its probability and its
    rank there (1: the likeliest). The chosen token is always among a token's alternatives, after the
    top ones when it ranked below them."""

    id: int
    label: str
    prob: float
    rank: int = 0  # 0: not recorded (answers saved before ranks were)


@dataclass(frozen=True)
class TokenEvent:
    index: int  # position among the generated tokens
    id: int
    text: str  # the text to append; "" while bytes of a character or a possible stop sequence wait
    logprob: float  # of this token under the distribution it was drawn from (after the sampler)
    prob: float
    model_logprob: float  # under the model's own softmax, before penalty and filters
    alternatives: list[Alternative]  # most likely first, after the sampler; the chosen one always in
    time: float = field(default_factory=time.perf_counter)
    batch_size: int = 1  # sequences in the forward pass that produced this token
    speculative: bool = False  # a proposed token the model accepted


@dataclass(frozen=True)
class QueuedEvent:
    """The request waits for room (the limits are reached): `ahead` requests are before it."""

    ahead: int
    running: int
    reason: str  # the first in line: "sequences" or "kv_cache", the limit that is full; the others "queue"


@dataclass(frozen=True)
class PrefillEvent:
    """A long prompt is being read: `done` of its `total` tokens are in the cache (one event per chunk
    after the first, so a page can show progress before the first token)."""

    done: int
    total: int


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
    cached_prompt_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    queued_s: float = 0.0  # time spent waiting for room before the prefill began
    batch_size_max: int = 1  # the most sequences decoded in one forward pass with this one
    batch_size_mean: float = 1.0
    speculative: dict[str, Any] = field(default_factory=dict)  # method, proposed, accepted, rate...


@dataclass(frozen=True)
class Candidate:
    text: str
    mean_logprob: float
    reason: str
    seed: int
    token_ids: list[int]


@dataclass(frozen=True)
class DoneEvent:
    reason: FinishReason
    text: str  # the whole answer
    error: str | None = None
    tail: str = ""  # text of Done.text not carried by any token event (held back when the stream ended)
    candidates: list[Candidate] = field(default_factory=list)  # best_of: every candidate, chosen first


Event = QueuedEvent | PrefillEvent | TokenEvent | StatsEvent | DoneEvent
