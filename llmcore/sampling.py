"""Sampling as pure functions over logits (temperature, top-k, top-p, min-p, repetition penalty), shared by
the next-token explorer and the chat engine.

Every stage maps logits to logits over the *whole* vocabulary: a token a stage cuts gets -inf, nothing is
renormalized over a truncated list. `explain` runs the stages one by one and reports each distribution,
so a page can show what each stage did; `sample` draws from the final one. Greedy decoding is the
temperature-0 limit: the distribution collapses onto the most likely token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from llmcore.config import Setting, setting, settings_of

STAGES = ("temperature", "top_k", "top_p", "min_p")


def _setting(default: Any, label: str, bounds: tuple[float, float, float], help: str) -> Any:
    """A dataclass field with its Setting (llmcore.config); bounds: (minimum, maximum, step)."""
    return setting(default, label, help, bounds)


@dataclass(frozen=True)
class SamplingConfig:
    """Sampler settings; the defaults change nothing (plain softmax sampling). The bounds in each
    field's Setting are what the pages accept; __post_init__ refuses what has no meaning at all."""

    temperature: float = _setting(
        1.0, "Temperature", (0, 5, 0.05), "Divides the logits: below 1 sharpens the distribution, above "
        "1 flattens it; 0 always picks the likeliest token (greedy).",
    )  # fmt: skip
    top_k: int = _setting(0, "Top-k", (0, 1000, 1), "Keep only the k likeliest tokens (0 = off).")
    top_p: float = _setting(
        1.0, "Top-p", (0.01, 1, 0.01),
        "Keep the likeliest tokens whose probabilities first add up to p (1 = off).",
    )  # fmt: skip
    min_p: float = _setting(
        0.0, "Min-p", (0, 0.99, 0.01),
        "Drop tokens less likely than min-p times the likeliest token's probability (0 = off).",
    )  # fmt: skip
    repetition_penalty: float = _setting(
        1.0, "Repetition penalty", (0.5, 3, 0.05),
        "Above 1 makes tokens already in the text less likely (1 = off).",
    )  # fmt: skip
    order: tuple[str, ...] = STAGES  # the order the filtering stages run in

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError("temperature must be a finite number >= 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0 (0 turns it off)")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if not 0 <= self.min_p < 1:
            raise ValueError("min_p must be in [0, 1)")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if sorted(self.order) != sorted(STAGES):
            raise ValueError(f"order must be a permutation of {', '.join(STAGES)}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def settings() -> dict[str, tuple[Setting, Any]]:
    """Each bounded sampler setting by field name, with its default, in the dataclass's order: the one
    place its label, bounds and explanation are written (the chat panel and the next-token explorer are
    built from it)."""
    return settings_of(SamplingConfig)


# --- stages: logits (V,) -> logits (V,) ------------------------------------------------------------
def apply_repetition_penalty(
    logits: torch.Tensor, previous_ids: Sequence[int], penalty: float
) -> torch.Tensor:
    """CTRL-style: a seen token's positive logit is divided by the penalty, a negative one multiplied."""
    if penalty == 1.0 or not previous_ids:
        return logits
    out = logits.clone()
    ids = torch.tensor(sorted(set(previous_ids)), dtype=torch.long)
    seen = out[ids]
    out[ids] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return out


def apply_grammar(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Structured output (llmcore.grammar): every token the grammar forbids gets -inf. It runs before
    every other stage, so they all choose among allowed tokens. allowed: (V,) bool."""
    return logits.masked_fill(~allowed, -math.inf)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 1.0:
        return logits
    if temperature == 0:
        # The limit T -> 0: all probability on the argmax (ties go to the lowest id, as in argmax).
        out = torch.full_like(logits, -math.inf)
        best = int(torch.argmax(logits))
        out[best] = 0.0
        return out
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.numel():
        return logits
    # Exactly k tokens, even with ties at the boundary (a threshold would keep every tied token).
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep[torch.topk(logits, k).indices] = True
    return logits.masked_fill(~keep, -math.inf)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the most likely tokens until their probability reaches p (the top one always stays)."""
    if p >= 1.0:
        return logits
    probs = torch.softmax(logits.float(), dim=-1)
    sorted_probs, order = torch.sort(probs, descending=True)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the tokens ranked above
    drop_sorted = before >= p
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, -math.inf)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    if min_p <= 0:
        return logits
    probs = torch.softmax(logits.float(), dim=-1)
    return logits.masked_fill(probs < min_p * probs.max(), -math.inf)


def _stage(logits: torch.Tensor, name: str, config: SamplingConfig) -> torch.Tensor:
    if name == "temperature":
        return apply_temperature(logits, config.temperature)
    if name == "top_k":
        return top_k_filter(logits, config.top_k)
    if name == "top_p":
        return top_p_filter(logits, config.top_p)
    return min_p_filter(logits, config.min_p)


def warp(logits: torch.Tensor, config: SamplingConfig, previous_ids: Sequence[int] = ()) -> torch.Tensor:
    """The final logits (V,) after the repetition penalty and every filtering stage in order."""
    out = apply_repetition_penalty(logits.float(), previous_ids, config.repetition_penalty)
    for name in config.order:
        out = _stage(out, name, config)
    return out


def sample(
    logits: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator | None = None,
    previous_ids: Sequence[int] = (),
) -> int:
    """One token id drawn from the warped distribution (argmax when greedy)."""
    final = warp(logits, config, previous_ids)
    if config.greedy:
        return int(torch.argmax(final))
    probs = torch.softmax(final, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def generator_for(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


# --- explaining ------------------------------------------------------------------------------------
def entropy_bits(probs: torch.Tensor) -> float:
    nz = probs[probs > 0]
    return float(-(nz * torch.log2(nz)).sum())


@dataclass
class StageResult:
    name: str  # "softmax", "grammar", "repetition_penalty", "temperature", "top_k", "top_p", "min_p"
    probs: torch.Tensor  # (V,) float32, a distribution over the whole vocabulary
    kept: int  # tokens no stage has cut so far
    cut: list[int] = field(default_factory=list)  # ids this stage removed (most likely first, capped)
    cut_count: int = 0
    entropy: float = 0.0
    active: bool = True  # False when the stage's setting leaves the distribution unchanged


def explain(
    logits: torch.Tensor,
    config: SamplingConfig,
    previous_ids: Sequence[int] = (),
    max_cut_listed: int = 20,
    allowed: torch.Tensor | None = None,
) -> list[StageResult]:
    """The distribution after each stage: plain softmax, the grammar's mask (given `allowed`, the (V,)
    bool of tokens it allows), repetition penalty, then the filters in order."""
    current = logits.float()
    results = [_result("softmax", current, None, max_cut_listed, True)]
    if allowed is not None:
        masked = apply_grammar(current, allowed)
        results.append(_result("grammar", masked, current, max_cut_listed, True))
        current = masked
    penalized = apply_repetition_penalty(current, previous_ids, config.repetition_penalty)
    results.append(
        _result(
            "repetition_penalty",
            penalized,
            current,
            max_cut_listed,
            config.repetition_penalty != 1.0 and bool(previous_ids),
        )
    )
    current = penalized
    for name in config.order:
        nxt = _stage(current, name, config)
        active = {
            "temperature": config.temperature != 1.0,
            "top_k": 0 < config.top_k < current.numel(),
            "top_p": config.top_p < 1.0,
            "min_p": config.min_p > 0,
        }[name]
        results.append(_result(name, nxt, current, max_cut_listed, active))
        current = nxt
    return results


def _result(
    name: str, logits: torch.Tensor, before: torch.Tensor | None, max_cut: int, active: bool
) -> StageResult:
    probs = torch.softmax(logits, dim=-1)
    # Tokens still in the running: a token whose probability underflows to 0 at a low temperature was
    # not cut by anything, so count finite logits rather than non-zero probabilities.
    kept_mask = torch.isfinite(logits)
    cut_ids: list[int] = []
    cut_count = 0
    if before is not None:
        was = torch.isfinite(before)
        cut_mask = was & ~torch.isfinite(logits)
        cut_count = int(cut_mask.sum())
        if cut_count:
            ranked = torch.argsort(before.masked_fill(~cut_mask, -math.inf), descending=True)
            cut_ids = [int(i) for i in ranked[: min(max_cut, cut_count)]]
    return StageResult(
        name=name,
        probs=probs,
        kept=int(kept_mask.sum()),
        cut=cut_ids,
        cut_count=cut_count,
        entropy=entropy_bits(probs),
        active=active,
    )
