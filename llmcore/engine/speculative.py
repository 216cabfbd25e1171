"""Speculative decoding: proposers guess tokens, `verify` keeps what the model allows.

Verification is the standard accept/reject rule (Leviathan et al. 2023; Chen et al. 2023): a proposed
token x drawn from the proposer's distribution q is kept with probability min(1, p(x) / q(x)), where p is
the model's distribution after the request's own sampler; at the first rejection a token is drawn from
the residual max(p - q, 0), renormalized; when every proposal is kept, one more token is drawn from p.
The tokens that come out are then distributed exactly as if the model had sampled them one by one. With
greedy decoding p is one-hot, so the output equals plain greedy decoding. Prompt lookup's proposals are
deterministic (q is one-hot on the proposed token), so a proposal is kept with probability p(x).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class Verified:
    tokens: list[int]  # accepted proposals, then the corrected or bonus token
    accepted: int  # how many of the proposals were kept
    distributions: list[torch.Tensor]  # p (V,) each output token was drawn from / checked against


def prompt_lookup(tokens: Sequence[int], num_tokens: int, ngram: int, min_ngram: int = 1) -> list[int]:
    """Up to `num_tokens` tokens that followed the latest earlier occurrence of the context's last n-gram
    (n from `ngram` down to `min_ngram`) in the prompt or the answer so far; [] when none occurred."""
    if len(tokens) < 2:
        return []
    for n in range(min(ngram, len(tokens) - 1), min_ngram - 1, -1):
        tail = list(tokens[-n:])
        # newest occurrence first: the closest context is the likeliest to continue the same way
        for start in range(len(tokens) - n - 1, -1, -1):
            if list(tokens[start : start + n]) == tail:
                follow = list(tokens[start + n : start + n + num_tokens])
                if follow:
                    return follow
    return []


def verify(
    proposals: list[int],
    proposal_probs: list[torch.Tensor] | None,
    target: Callable[[int, list[int]], torch.Tensor],
    greedy: bool,
    generator: torch.Generator,
) -> Verified:
    """Check `proposals` against the model. target(i, kept) is the model's distribution p (V,) (after the
    sampler, given the tokens kept so far) at the i-th position, for i in 0..len(proposals).
    proposal_probs: the proposer's q (V,) for each proposal; None when the proposals were deterministic."""
    kept: list[int] = []
    distributions: list[torch.Tensor] = []
    for i, token in enumerate(proposals):
        p = target(i, kept)
        distributions.append(p)
        if greedy:
            best = int(torch.argmax(p))
            if best == token:
                kept.append(token)
                continue
            return Verified([*kept, best], len(kept), distributions)
        q_token = 1.0 if proposal_probs is None else float(proposal_probs[i][token])
        ratio = float(p[token]) / q_token if q_token > 0 else 0.0
        if float(torch.rand((), generator=generator)) < min(1.0, ratio):
            kept.append(token)
            continue
        if proposal_probs is None:
            residual = p.clone()
            residual[token] = 0.0
        else:
            residual = torch.clamp(p - proposal_probs[i], min=0.0)
        total = float(residual.sum())
        residual = residual / total if total > 0 else p
        drawn = int(torch.multinomial(residual, 1, generator=generator))
        return Verified([*kept, drawn], len(kept), distributions)
    p = target(len(proposals), kept)
    distributions.append(p)
    bonus = int(torch.argmax(p)) if greedy else int(torch.multinomial(p, 1, generator=generator))
    return Verified([*kept, bonus], len(kept), distributions)


@dataclass
class SpeculationStats:
    """Per answer (and, summed, per engine): what speculation proposed, kept and cost."""

    method: str = "off"
    proposed: int = 0
    accepted: int = 0
    verify_passes: int = 0
    verify_seconds: float = 0.0
    propose_seconds: float = 0.0
    skipped_steps: int = 0  # "auto" decoded plainly because speculation did not pay

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.proposed if self.proposed else None

    def as_json(self, plain_step_s: float | None) -> dict[str, object]:
        """With the engine's measured time of a plain one-token step, the net speed-up of the verify
        passes: tokens they produced per second over plain decoding's tokens per second."""
        speedup = None
        spent = self.verify_seconds + self.propose_seconds
        if self.verify_passes and plain_step_s and spent > 0:
            produced = self.accepted + self.verify_passes
            speedup = round((produced / spent) * plain_step_s, 3)
        rate = self.acceptance_rate
        return {
            "method": self.method,
            "proposed": self.proposed,
            "accepted": self.accepted,
            "acceptance_rate": None if rate is None else round(rate, 3),
            "verify_passes": self.verify_passes,
            "skipped_steps": self.skipped_steps,
            "speedup": speedup,
        }
