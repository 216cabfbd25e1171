"""The scheduler's state: one `Job` per request, one `Sequence` per decoded sequence (best_of has N, beam
search one per beam)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from llmcore.engine.beam import BeamSearch
from llmcore.engine.detokenizer import Detokenizer
from llmcore.engine.speculative import SpeculationStats
from llmcore.engine.stream import GenerationStream
from llmcore.engine.types import FinishReason, TokenEvent
from llmcore.grammar import GrammarState


class JobState(enum.Enum):
    WAITING = "waiting"  # not admitted yet: the limits are full
    PREFILL = "prefill"  # admitted, its prompt is being computed chunk by chunk
    DECODE = "decode"


@dataclass
class Sequence:
    seed: int
    generator: torch.Generator
    detokenizer: Detokenizer
    row: int = -1  # its row of the KV cache
    length: int = 0  # positions of its row that hold KV (virtual tokens, prompt, generated tokens fed)
    pending: int | None = None  # the newest generated token, not fed to the model yet
    generated: list[int] = field(default_factory=list)
    model_logprobs: list[float] = field(default_factory=list)
    reason: FinishReason | None = None
    events: list[TokenEvent] = field(default_factory=list)  # best_of buffers events until it chooses
    grammar: GrammarState | None = None  # structured output: where this sequence is in its grammar
    # "auto" speculation: steps to decode plainly before trying again, and how long the next pause is
    speculation_pause: int = 0
    speculation_backoff: int = 8

    @property
    def text(self) -> str:
        return self.detokenizer.text


@dataclass
class Job:
    stream: GenerationStream
    state: JobState = JobState.WAITING
    prompt: list[int] = field(default_factory=list)
    seed: int = 0
    max_new: int = 0
    positions: int = 0  # KV positions each of its rows may need (the admission reserves them)
    seqs: list[Sequence] = field(default_factory=list)
    prepared: bool = False
    cached_tokens: int = 0
    prefilled: int = 0  # prompt positions computed (or copied from the prefix cache) so far
    admitted_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    shown: str = ""  # the text token events delivered so far
    batch_sizes: list[int] = field(default_factory=list)
    speculation: SpeculationStats = field(default_factory=SpeculationStats)
    last_queued: tuple[int, str] | None = None  # the (ahead, reason) its last QueuedEvent said
    beam: BeamSearch | None = None  # beam search: its bookkeeping; each beam is one of `seqs`
    beam_first_logits: torch.Tensor | None = None  # the prompt's last logits, for the answer's records
    beam_batches: list[int] = field(default_factory=list)  # batch size of each beam step

    @property
    def running(self) -> list[Sequence]:
        return [s for s in self.seqs if s.reason is None]
