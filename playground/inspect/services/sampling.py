"""The next-token explorer: one forward pass per prompt, then every sampler setting on cached logits."""

from __future__ import annotations

import math
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from django.conf import settings

from llmcore.encoding import encode_text
from llmcore.grammar import Constraint, GrammarError, grammars_for
from llmcore.lens import LensError, encode_prompt, next_token_logits
from llmcore.sampling import SamplingConfig, apply_grammar, explain, generator_for, sample
from llmcore.sampling import settings as sampler_settings
from llmcore.store import StoreError
from llmcore.tokenize import token_display
from playground.inspect.services.common import InspectError, get_loaded

STAGE_TITLES = {
    "softmax": "Softmax",
    "grammar": "Grammar",
    "repetition_penalty": "Repetition penalty",
    "temperature": "Temperature",
    "top_k": "Top-k",
    "top_p": "Top-p",
    "min_p": "Min-p",
}
CURVE_POINTS = 200  # ranks drawn on the cumulative curve
_CACHE_SIZE = 16
_cache: OrderedDict[tuple[str, bool, str, str], tuple[list[int], int, torch.Tensor]] = OrderedDict()
_lock = threading.Lock()


@dataclass
class Prompt:
    model: str
    ids: list[int]  # the prompt's, then the answer so far's
    logits: torch.Tensor  # (V,)
    tokenizer: Any
    answer_ids: list[int] = field(default_factory=list)  # the last ids: the answer so far
    stop_ids: list[int] = field(default_factory=list)


def prompt_logits(model: str, text: str, as_chat: bool, user: Any = None, answer: str = "") -> Prompt:
    """Next-token logits for a prompt (and the start of an answer after it); the same prompt again
    reuses them (sliders never recompute)."""
    try:
        loaded = get_loaded(model, user)
        key = (model, as_chat, text, answer)
        with _lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
        if hit is None:
            answer_ids = encode_text(loaded.tokenizer, answer, add_special_tokens=False) if answer else []
            ids = encode_prompt(loaded, text, as_chat) + answer_ids
            if len(ids) > settings.INSPECT_MAX_TOKENS:
                raise InspectError(
                    f"The prompt is {len(ids)} tokens long; the limit is {settings.INSPECT_MAX_TOKENS}."
                )
            hit = (ids, len(answer_ids), next_token_logits(loaded, ids))
            with _lock:
                _cache[key] = hit
                while len(_cache) > _CACHE_SIZE:
                    _cache.popitem(last=False)
    except (LensError, LookupError, StoreError) as exc:  # StoreError: a model whose files do not load
        raise InspectError(str(exc)) from None
    ids, answered, logits = hit
    return Prompt(
        model=model,
        ids=ids,
        logits=logits,
        tokenizer=loaded.tokenizer,
        answer_ids=ids[len(ids) - answered :],
        stop_ids=list(loaded.stop_token_ids),
    )


def run_explorer(data: dict[str, Any], draw: bool, user: Any) -> dict[str, Any]:
    """The explorer's answer for a valid form's data: the prompt's next-token distribution through the
    sampler stages it asks for (and one draw with `draw`)."""
    config = SamplingConfig(
        **{name: data[name] for name in sampler_settings()},  # temperature, top_k, top_p, min_p...
        order=data["order"],
    )
    prompt = prompt_logits(data["model"], data["text"], data["as_chat"], user, data.get("answer") or "")
    return explore(prompt, config, data["top_n"], data.get("seed"), draw, data.get("constraint"))


def grammar_step(prompt: Prompt, constraint: Constraint) -> dict[str, Any]:
    """The grammar after the answer so far: the tokens it allows next ((V,) bool) and whether the answer
    is complete already."""
    try:
        state = grammars_for(prompt.tokenizer, prompt.logits.numel(), prompt.stop_ids).state(constraint)
    except GrammarError as exc:
        raise InspectError(str(exc)) from None
    taken = state.advance_all(prompt.answer_ids)
    if taken < len(prompt.answer_ids):
        token = token_display(prompt.tokenizer, prompt.answer_ids[taken])
        raise InspectError(
            f"The answer so far leaves the grammar at its token {taken + 1} ({token}): the JSON cannot go "
            "on that way. Shorten the answer or fix it."
        )
    allowed = state.allowed()
    return {"allowed": allowed, "count": int(allowed.sum()), "complete": state.accepting}


def explore(
    prompt: Prompt,
    config: SamplingConfig,
    top_n: int,
    seed: int | None,
    draw: bool,
    constraint: Constraint | None = None,
) -> dict[str, Any]:
    """Everything the page and the API show for one setting of the sampler (and of a grammar)."""
    tok = prompt.tokenizer
    grammar = grammar_step(prompt, constraint) if constraint is not None else None
    allowed = grammar["allowed"] if grammar else None
    stages = explain(prompt.logits, config, previous_ids=prompt.ids, allowed=allowed)
    final = stages[-1].probs
    ranked = torch.argsort(final, descending=True)
    rank_of = {int(t): r + 1 for r, t in enumerate(ranked[: max(top_n, 1000)].tolist())}
    base = stages[0].probs

    def bars(probs: torch.Tensor) -> list[dict[str, Any]]:
        values, ids = torch.topk(probs, top_n)
        return [
            {
                "id": int(i),
                "token": token_display(tok, int(i)),
                "prob": float(v),
                "softmax_prob": float(base[int(i)]),
            }
            for v, i in zip(values, ids, strict=True)
            if float(v) > 0
        ]

    result: dict[str, Any] = {
        "model": prompt.model,
        "prompt_tokens": len(prompt.ids),
        "vocab_size": int(final.numel()),
        "order": list(config.order),
        "stages": [
            {
                "name": s.name,
                "title": STAGE_TITLES[s.name],
                "active": s.active,
                "kept": s.kept,
                "cut_count": s.cut_count,
                "cut": [token_display(tok, i) for i in s.cut],
                "entropy_bits": round(max(s.entropy, 0.0), 4),
                "top": bars(s.probs),
            }
            for s in stages
        ],
        "curve": cumulative_curve(stages, config),
        "grammar": (
            {"kind": constraint.kind.value, "allowed": grammar["count"], "complete": grammar["complete"]}
            if constraint is not None and grammar is not None
            else None
        ),
    }
    if draw:
        seed = seed if seed is not None else random.randrange(2**31)
        logits = prompt.logits if allowed is None else apply_grammar(prompt.logits, allowed)
        token = sample(logits, config, generator_for(seed), previous_ids=prompt.ids)
        result["sample"] = {
            "seed": seed,
            "id": token,
            "token": token_display(tok, token),
            "prob": float(final[token]),
            "rank": rank_of.get(token) or int((final > final[token]).sum()) + 1,
            "greedy": config.greedy,
        }
    return result


def cumulative_curve(stages: list[Any], config: SamplingConfig) -> dict[str, Any]:
    """Cumulative probability by rank of the distribution that top-p sees, and where it cuts."""
    names = [s.name for s in stages]
    before_top_p = stages[names.index("top_p") - 1].probs
    sorted_probs = torch.sort(before_top_p, descending=True).values
    cumulative = torch.cumsum(sorted_probs, dim=0)
    reached = int((cumulative - sorted_probs < config.top_p).sum())
    points = cumulative[:CURVE_POINTS].tolist()
    return {
        "points": [round(p, 5) for p in points],
        "top_p": config.top_p,
        "cut_rank": reached,  # tokens kept by top-p, counting from the most likely
        "log_x_max": math.log10(max(len(points), 2)),
    }
