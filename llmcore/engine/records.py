"""What the scheduler reports besides the tokens: each token's alternatives, an answer's provenance and
the StatsEvent that ends its stream, best_of's ranked candidates, and the Engine page's numbers."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import torch

from llmcore.engine.sequence import Job, Sequence
from llmcore.engine.types import Alternative, Candidate, FinishReason, GenerationRequest, StatsEvent
from llmcore.tokenize import token_display

if TYPE_CHECKING:
    from llmcore.engine.runner import ModelRunner
    from llmcore.engine.scheduler import Scheduler


class TokenLabels:
    """The alternatives a token event shows, each with its display label (cached: the vocabulary bounds
    how many there are)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._labels: dict[int, str] = {}  # token id -> its display label

    def alternatives(self, logprobs: torch.Tensor, n: int, chosen: int) -> list[Alternative]:
        """The n likeliest tokens with their ranks, and the chosen one after them (with its rank) when
        it was not among them: a sampled token can rank far below the top few."""
        top = torch.topk(logprobs, min(n, int(torch.isfinite(logprobs).sum()) or 1))
        found = [
            Alternative(int(i), self.label(int(i)), math.exp(float(lp)), rank)
            for rank, (lp, i) in enumerate(zip(top.values, top.indices, strict=True), start=1)
        ]
        if all(a.id != chosen for a in found):
            value = logprobs[chosen]
            rank = int((logprobs > value).sum()) + 1
            found.append(Alternative(chosen, self.label(chosen), math.exp(float(value)), rank))
        return found

    def label(self, token_id: int) -> str:
        label = self._labels.get(token_id)
        if label is None:
            try:
                label = token_display(self.tokenizer, token_id)
            except Exception:  # noqa: BLE001 - a slow tokenizer without a backend: plain decode
                label = str(self.tokenizer.decode([token_id]))
            self._labels[token_id] = label
        return label


def provenance(
    runner: ModelRunner, request: GenerationRequest, prompt_tokens: int, seed: int | None, max_new_tokens: int
) -> dict[str, Any]:
    """What an answer records of how it was made: the model, its prompt's length, the sampler, the
    seed, and how the engine computed it. The one place this record is written."""
    return {
        "model": runner.loaded.name,
        "prompt_tokens": prompt_tokens,
        "seed": seed,
        "sampling": dataclasses.asdict(request.sampling),
        "max_new_tokens": max_new_tokens,
        "stop_sequences": list(request.stop_sequences),
        "best_of": request.best_of,
        "num_beams": request.num_beams,
        "speculative": dataclasses.asdict(request.speculative),
        "constraint": request.constraint.describe() if request.constraint else None,
        "decode": runner.decode_info.as_json(),
        "attention": runner.attention,
        # whether this machine computes a prompt split by a prefix-cache hit as the whole (a replay
        # then repeats the answer unless a batched pass or the weights differ)
        "split_invariant": runner.split_invariant,
    }


def stats_event(
    job: Job, chosen: Sequence | None, runner: ModelRunner, context_length: int, plain_step_s: float | None
) -> StatsEvent:
    """The numbers of a job's answer, pushed before its Done event (`chosen`: the sequence that gave it)."""
    stream = job.stream
    request = stream.request
    generated = len(chosen.generated) if chosen else 0
    ttft = job.first_token_at - stream.submitted_at if job.first_token_at else None
    decode_s = (job.last_token_at or 0) - (job.first_token_at or 0)
    tps = (generated - 1) / decode_s if generated > 1 and decode_s > 0 else None
    requested = request.max_new_tokens
    sizes = job.batch_sizes or [1]
    return StatsEvent(
        prompt_tokens=len(job.prompt),
        generated_tokens=generated,
        time_to_first_token_s=ttft,
        tokens_per_s=tps,
        seed=job.seed,
        max_new_tokens=job.max_new or requested,
        max_new_tokens_requested=requested,
        clamped=bool(job.max_new) and job.max_new < requested,
        context_length=context_length,
        provenance=provenance(runner, request, len(job.prompt), job.seed, job.max_new or requested),
        cached_prompt_tokens=job.cached_tokens,
        queued_s=(job.admitted_at or stream.submitted_at) - stream.submitted_at,
        batch_size_max=max(sizes),
        batch_size_mean=round(sum(sizes) / len(sizes), 2),
        speculative=job.speculation.as_json(plain_step_s) if request.speculative.on else {},
    )


def ranked(seqs: list[Sequence]) -> tuple[Sequence, list[Candidate]]:
    """best_of: the chosen candidate (the highest mean model log-probability; ties: the lowest seed) and
    every candidate, chosen first."""
    order = sorted(seqs, key=lambda s: (-_mean(s.model_logprobs), s.seed))
    candidates = [
        Candidate(s.text, _mean(s.model_logprobs), s.reason or "length", s.seed, list(s.generated))
        for s in order
    ]
    return order[0], candidates


def engine_metrics(scheduler: Scheduler) -> dict[str, Any]:
    """What runs now and what ran, as the Engine page and /metrics show them."""
    now = time.perf_counter()
    recent = [t for t in scheduler.recent_tokens if now - t <= 10.0]
    return {
        "active_sequences": len(scheduler.rows),
        "active_requests": len(scheduler.jobs),
        "waiting_requests": len(scheduler.waiting),
        "max_sequences": scheduler.limits.max_sequences,
        "kv_cache_bytes": scheduler.cache.allocated_bytes,
        "kv_cache_used_bytes": sum(s.length for s in scheduler.rows) * scheduler.cache.token_bytes,
        "kv_cache_budget_bytes": scheduler.budget_bytes,
        "prefix_cache": {
            "enabled": scheduler.prefix.enabled,
            "blocks": scheduler.prefix.blocks,
            "bytes": scheduler.prefix.bytes,
            "budget_bytes": scheduler.prefix.budget_bytes,
            "lookup_tokens": scheduler.prefix.lookup_tokens,
            "hit_tokens": scheduler.prefix.hit_tokens,
            "hit_rate": scheduler.prefix.hit_rate,
            "evicted_blocks": scheduler.prefix.evicted_blocks,
        },
        "tokens_per_s": round(len(recent) / 10.0, 2),
        "generated_tokens_total": scheduler.totals["generated_tokens"],
        "forward_passes_total": scheduler.runner.forward_passes,
        "speculative": {
            "proposed_total": scheduler.totals["speculative_proposed"],
            "accepted_total": scheduler.totals["speculative_accepted"],
        },
        "finished": {r.value: scheduler.totals[f"finished_{r.value}"] for r in FinishReason},
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else -math.inf
