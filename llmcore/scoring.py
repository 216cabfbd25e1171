"""How likely a model finds each token of a given text: what an API's `echo` with `logprobs` reports for
the prompt (lm-evaluation-harness scores answers this way), under the model's own softmax."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llmcore.errors import UserError
from llmcore.evaluate import logits_of


class ScoringError(UserError, ValueError):
    """Text that cannot be scored as asked; the message says why."""


@dataclass(frozen=True)
class TokenScore:
    logprob: float  # of this token, given every token before it
    top: list[tuple[int, float]]  # the likeliest tokens at this position: (id, logprob), likeliest first


@torch.inference_mode()
def prompt_logprobs(loaded: Any, ids: Sequence[int], top_n: int, max_tokens: int) -> list[TokenScore | None]:
    """A score per token of `ids`; None for the first, which nothing comes before. One forward pass,
    whose logits (T, V) are held at once, so the text is refused over `max_tokens`."""
    if len(ids) > max_tokens:
        raise ScoringError(f"The prompt is {len(ids)} tokens; scoring takes at most {max_tokens} at once.")
    x = torch.tensor([list(ids)], device=loaded.device)  # (1, T)
    logprobs = torch.log_softmax(logits_of(loaded, x, use_cache=False)[0, :-1].float(), dim=-1)  # (T-1, V)
    chosen = logprobs.gather(1, x[0, 1:, None])[:, 0].tolist()  # position t predicts token t + 1
    top = torch.topk(logprobs, top_n) if top_n else None
    scores: list[TokenScore | None] = [None]
    for t, value in enumerate(chosen):
        pairs = list(zip(top.indices[t].tolist(), top.values[t].tolist(), strict=True)) if top else []
        scores.append(TokenScore(value, pairs))
    return scores
