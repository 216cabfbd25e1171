"""The draft-model proposer: a smaller model with the same tokenizer guesses the next tokens.

It keeps its own KV cache, one row per speculating sequence, and feeds each row only the tokens it has
not seen (the token the target model corrected or added after the last verification, and the proposals it
kept), so a proposal of k tokens costs k small forward passes.
"""

from __future__ import annotations

from typing import Any

import torch

from llmcore.engine.runner import ModelRunner
from llmcore.loading import LoadedModel
from llmcore.sampling import SamplingConfig, generator_for, warp


class DraftProposer:
    def __init__(self, draft: LoadedModel, target: LoadedModel, max_rows: int) -> None:
        if not draft.is_causal:
            raise ValueError(f"{draft.name} is an encoder: it cannot draft tokens")
        if draft.tokenizer.get_vocab() != target.tokenizer.get_vocab():
            raise ValueError(
                f"{draft.name} does not share {target.name}'s tokenizer, so it cannot draft for it"
            )
        if draft.virtual_tokens:
            raise ValueError(f"{draft.name} is prompt-tuned; a draft model must take plain tokens")
        self.name = draft.name
        self.runner = ModelRunner(draft, threads=1)
        self.max_rows = max_rows
        self._rows: dict[int, tuple[int, torch.Generator]] = {}  # sequence key -> (row, generator)
        self._seen: dict[int, list[int]] = {}  # the tokens whose KV each row holds

    def propose(
        self, key: int, context: list[int], k: int, sampling: SamplingConfig, seq: Any
    ) -> tuple[list[int], list[torch.Tensor] | None]:
        """k proposals after `context`, and the draft's distribution q of each (None when greedy)."""
        if key not in self._rows:
            used = {row for row, _ in self._rows.values()}
            row = next(r for r in range(self.max_rows + 1) if r not in used)
            self._rows[key] = (row, generator_for(seq.seed + 1_000_003))
            self._seen[key] = []
        row, generator = self._rows[key]
        seen = self._seen[key]
        common = 0  # the row's KV is valid for the longest common start of what it saw and the context
        for a, b in zip(seen, context, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(context) - 1)  # the last context token is fed to get its logits
        self.runner.cache.reserve(max(self.runner.cache.rows_capacity, row + 1), len(context) + k + 1)
        logits = self.runner.extend(row, common, context[common:], prompt=True)[-1]
        seen[:] = context
        proposals: list[int] = []
        probs: list[torch.Tensor] = []
        for i in range(k):
            final = warp(logits, sampling, context + proposals)
            if sampling.greedy:
                token = int(torch.argmax(final))
            else:
                q = torch.softmax(final, dim=-1)
                token = int(torch.multinomial(q, 1, generator=generator))
                probs.append(q)
            proposals.append(token)
            if i + 1 < k:
                logits = self.runner.extend(row, len(seen), [token])[-1]
                seen.append(token)
        return proposals, (None if sampling.greedy else probs)

    def forget(self, key: int) -> None:
        self._rows.pop(key, None)
        self._seen.pop(key, None)
        if not self._rows:
            self.runner.cache.release()
