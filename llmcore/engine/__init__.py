"""The generation engine (continuous batching, prefix caching, speculative decoding, attention kernels), in
the spirit of vLLM's v1 layout:

- `types`: requests, limits and the events of a stream (FinishReason, TokenEvent, Alternative...);
- `stream`: the events of one request, readable from a thread or from asyncio;
- `engine`: one `Engine` per loaded model, with the thread that drives its scheduler;
- `scheduler`: admission under explicit limits, continuous batching, chunked prefill, cancellation;
- `prepare`: a request made ready to admit (its prompt, checks, clamp, seed, candidates, grammar, beams);
- `sequence` and `beam`: the scheduler's per-request and per-sequence state, and beam search's books;
- `records`: what the scheduler reports (token alternatives, provenance, stats, the Engine page's numbers);
- `runner`: one forward pass over a batch of KV-cache rows;
- `kv_cache`: the running sequences' cache rows and the prefix cache of reusable blocks;
- `speculative` and `draft`: proposers and the accept/reject verification;
- `detokenizer`: incremental detokenization with stop sequences.

Nothing outside this package needs to know how a step is batched.
"""

from llmcore.engine.engine import Engine
from llmcore.engine.runner import DEFAULT_THREADS, PARALLEL_PREFILL_TOKENS, own_threads
from llmcore.engine.stream import GenerationStream
from llmcore.engine.types import (
    STOP_REASONS,
    Alternative,
    Candidate,
    DoneEvent,
    EngineLimits,
    Event,
    FinishReason,
    GenerationRequest,
    PrefillEvent,
    QueuedEvent,
    SpeculativeConfig,
    StatsEvent,
    TokenEvent,
)

__all__ = [
    "DEFAULT_THREADS",
    "PARALLEL_PREFILL_TOKENS",
    "STOP_REASONS",
    "Alternative",
    "Candidate",
    "DoneEvent",
    "Engine",
    "EngineLimits",
    "Event",
    "FinishReason",
    "GenerationRequest",
    "GenerationStream",
    "PrefillEvent",
    "QueuedEvent",
    "SpeculativeConfig",
    "StatsEvent",
    "TokenEvent",
    "own_threads",
]
