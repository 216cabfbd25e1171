"""Beam search bookkeeping, one step at a time, so that its beams are rows of the running batch.

The scheduler owns the rows: each step it hands `BeamSearch.advance` the log-probabilities of every beam
(one decode pass, shared with whatever else is running), and copies each surviving beam's KV row from the
parent `advance` names. What it keeps follows transformers' `generate(num_beams=...)` exactly (its
vectorized beam search since v4.50), so the engine's beams give the same tokens as that reference:

- the 2 x beams best continuations (more with several end tokens) over all beams are ranked by their summed
  log-probability;
- a continuation that ends (an end token, or the length limit) and ranks among the first `beams` becomes a
  finished hypothesis, scored by its sum over (generated length ** length_penalty); the best `beams`
  hypotheses are kept;
- the best `beams` continuations that did not end run on;
- the search stops when no running beam can beat the worst kept hypothesis (transformers' heuristic,
  `early_stopping` False), as soon as `beams` hypotheses are finished (True), or only at the length limit
  ("never" with a positive length penalty), or when every continuation ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

NEG = -1.0e9  # transformers' "impossible" score


@dataclass
class Hypothesis:
    score: float  # summed log-probability over (generated length ** length_penalty)
    tokens: list[int]  # generated tokens, the end token included when it ended with one
    ended_by_stop: bool


@dataclass
class BeamSearch:
    beams: int
    max_new: int
    stop_ids: frozenset[int]
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    scores: torch.Tensor = field(init=False)  # (beams,) summed log-probabilities of the running beams
    tokens: list[list[int]] = field(init=False)  # the running beams' generated tokens
    finished: list[Hypothesis] = field(default_factory=list)  # best first, at most `beams`
    improvable: bool = True  # transformers' "early stop heuristic unsatisfied"
    done: bool = False

    def __post_init__(self) -> None:
        # Every beam starts as the prompt; only the first may expand at the first step, or the search
        # would keep the same continuation once per beam.
        self.scores = torch.full((self.beams,), NEG)
        self.scores[0] = 0.0
        self.tokens = [[] for _ in range(self.beams)]

    @property
    def keep(self) -> int:
        return max(2, 1 + len(self.stop_ids)) * self.beams

    def advance(self, logprobs: torch.Tensor) -> list[int]:
        """One step. `logprobs` (beams, V): each running beam's next-token log-probabilities (after any
        logits processor). Returns, for each new running beam, the index of the beam it continues; its new
        token is the last of `tokens[i]`. Sets `done` when the search is over."""
        vocab = logprobs.shape[-1]
        total = (logprobs.float() + self.scores[:, None]).reshape(-1)
        top_scores, top_index = torch.topk(total, self.keep)
        parents = (top_index // vocab).tolist()
        new_tokens = (top_index % vocab).tolist()
        generated = len(self.tokens[0]) + 1  # every running beam has the same length
        at_limit = generated >= self.max_new
        ends = [at_limit or t in self.stop_ids for t in new_tokens]

        # the finished hypotheses: only continuations ranked among the first `beams` may join
        full = len(self.finished) == self.beams
        if self.improvable and not (full and self.early_stopping is True):
            for rank in range(self.beams):
                if ends[rank]:
                    score = float(top_scores[rank]) / (generated**self.length_penalty)
                    tokens = [*self.tokens[parents[rank]], new_tokens[rank]]
                    self.finished.append(Hypothesis(score, tokens, new_tokens[rank] in self.stop_ids))
            # a stable sort: among equal scores the earlier one stays first, as transformers' topk keeps it
            self.finished.sort(key=lambda h: -h.score)
            del self.finished[self.beams :]

        # the running beams: the best continuations that did not end (ended ones sink below them)
        running = top_scores + torch.tensor(ends, dtype=torch.float32) * NEG
        order = torch.topk(running, self.beams).indices.tolist()
        self.scores = running[order]
        self.tokens = [[*self.tokens[parents[k]], new_tokens[k]] for k in order]

        # can a running beam still beat the worst kept hypothesis?
        if self.early_stopping == "never" and self.length_penalty > 0:
            best_length = self.max_new
        else:
            best_length = generated
        best_possible = float(self.scores[0]) / (best_length**self.length_penalty)
        worst = self.finished[-1].score if len(self.finished) == self.beams else NEG
        self.improvable = self.improvable and best_possible > worst
        all_finished = len(self.finished) == self.beams and self.early_stopping is True
        self.done = not self.improvable or all_finished or all(ends)
        return [parents[k] for k in order]

    def best(self) -> Hypothesis:
        """The answer: the best finished hypothesis (the best running beam if none finished)."""
        if self.finished:
            return self.finished[0]
        return Hypothesis(float(self.scores[0]), list(self.tokens[0]), False)
