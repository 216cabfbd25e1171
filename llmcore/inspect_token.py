"""The attention behind one generated token: at step i the model read the prompt and the tokens it had
written before i, and its last position (the query) chose token i. This keeps only that query's row of
every layer and head - what the last position looked at - so a step of a 30-layer, 9-head model over 500
tokens is 30 x 9 x 500 numbers, not the 30 x 9 x 500 x 500 of a whole attention map.

It reuses the attention explorer's capture (llmcore.attention): the eager twin that shares the loaded
model's weights, the module the model declares as its attention recorder, and the one-capture-at-a-time
lock. One forward pass, no gradients, nothing kept but a (L, H, T) float16 tensor on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmcore.attention import (
    AttentionInputError,
    AttentionUnsupported,
    _kv_heads,
    forward_with_attention,
)
from llmcore.loading import LoadedModel

ROUND_DIGITS = 4  # float16 holds about 3-4 significant digits: more in JSON would be noise


@dataclass
class StepAttention:
    """The last query position's attention over the context, every layer and head."""

    weights: torch.Tensor  # (L, H, T) float16; each (layer, head) row sums to 1
    num_kv_heads: int
    forward_seconds: float

    @property
    def num_layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[1])

    @property
    def num_tokens(self) -> int:
        return int(self.weights.shape[2])

    def rows(self, digits: int = ROUND_DIGITS) -> list[list[list[float]]]:
        """[layer][head][context position], rounded (JSON-friendly)."""
        rounded: list[list[list[float]]] = torch.round(self.weights.double(), decimals=digits).tolist()
        return rounded


def check_context(loaded: LoadedModel, context_ids: list[int], max_tokens: int) -> None:
    """The context must be non-empty, within the limit and the model's context, and in its vocabulary."""
    if not context_ids:
        raise AttentionInputError("There is no context to look at.")
    config = loaded.model.config.get_text_config()
    limit, why = max_tokens, f"the inspector looks at most {max_tokens:,} tokens"
    context = getattr(config, "max_position_embeddings", None)
    if context and context < limit:
        limit, why = context, f"{loaded.name} reads at most {context:,} tokens"
    if len(context_ids) > limit:
        raise AttentionInputError(
            f"This step's context is {len(context_ids):,} tokens; {why}, so its attention is not shown."
        )
    vocab = int(loaded.model.get_input_embeddings().num_embeddings)
    if any(not 0 <= int(i) < vocab for i in context_ids):
        raise AttentionInputError(
            f"Some of these token ids are not in {loaded.name}'s vocabulary of {vocab:,}: "
            "the model changed since this answer was written."
        )


def last_query_attention(loaded: LoadedModel, context_ids: list[int], *, max_tokens: int) -> StepAttention:
    """Run the model once over `context_ids` and keep the attention of the last position, every layer
    and head: (L, H, T), float16.

    Raises AttentionInputError for a context over `max_tokens` (or the model's context length), empty, or
    with ids outside the vocabulary, and AttentionUnsupported for a model that is not causal.
    """
    if not loaded.is_causal:
        raise AttentionUnsupported(f"{loaded.name} does not generate text, so it has no generated tokens.")
    if loaded.soft_prompt is not None:
        raise AttentionUnsupported(
            f"{loaded.name} is prompt-tuned: it also attends to {loaded.virtual_tokens} learned virtual "
            "tokens that have no text, so its attention rows are not shown."
        )
    check_context(loaded, context_ids, max_tokens)
    rows: list[torch.Tensor] = []
    config, seconds = forward_with_attention(
        loaded.model, context_ids, lambda weights: rows.append(weights[:, -1, :].to(torch.float16).cpu())
    )  # each layer's (H, T) row: the last query only
    return StepAttention(weights=torch.stack(rows), num_kv_heads=_kv_heads(config), forward_seconds=seconds)


def step_context(prompt_ids: list[int], generated_ids: list[int], step: int) -> list[int]:
    """What the model read when it chose generated token `step`: the prompt and the tokens before it."""
    if not generated_ids:
        raise IndexError("This answer has no generated tokens.")
    if not 0 <= step < len(generated_ids):
        raise IndexError(f"Token {step} does not exist: the answer has tokens 0-{len(generated_ids) - 1}.")
    return [*prompt_ids, *generated_ids[:step]]
