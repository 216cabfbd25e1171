"""Sentence embeddings from an encoder, pooled as the model was trained to be pooled.

A sentence-transformers model says how its token vectors become one sentence vector in
`1_Pooling/config.json` (mean, CLS token, max, or mean scaled by the square root of the length); mean
pooling over the real tokens (padding masked out) is what all-MiniLM-L6-v2 uses and is the default when a
folder says nothing. Vectors are L2-normalized, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from llmcore.encoding import encode_text
from llmcore.errors import UserError
from llmcore.store import POOLING_FILE

Pooling = Literal["mean", "cls", "max", "mean_sqrt_len"]
BATCH = 32  # texts per forward pass: bounds the padding a long text adds to short ones


class EmbeddingError(UserError, ValueError):
    """Text that cannot be embedded as asked (too long, empty, not an encoder); the message says why."""


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]  # one per text, normalized
    token_counts: list[int]  # tokens each text took, the tokenizer's own markers included


def read_pooling(folder: Path) -> Pooling:
    """The pooling a sentence-transformers folder was trained with; "mean" when it says nothing."""
    try:
        config = json.loads((folder / POOLING_FILE).read_text())
    except (OSError, ValueError):
        return "mean"
    for key, mode in (
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
        ("pooling_mode_mean_tokens", "mean"),
    ):
        if config.get(key) is True:
            return mode  # type: ignore[return-value]  # a literal from the tuple above
    return "mean"


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: Pooling) -> torch.Tensor:
    """(B, T, H) token vectors and a (B, T) mask of real tokens -> (B, H) sentence vectors."""
    if mode == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if mode == "max":
        return hidden.masked_fill(weights == 0, -torch.inf).max(dim=1).values
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1)
    return summed / (counts.sqrt() if mode == "mean_sqrt_len" else counts)


def token_ids(loaded: Any, texts: Sequence[str]) -> list[list[int]]:
    """Each text's ids with the tokenizer's markers ([CLS] ... [SEP]); special-token text stays text.
    A text longer than the model reads is refused, never cut."""
    limit = loaded.context_length
    out = []
    for i, text in enumerate(texts):
        ids = encode_text(loaded.tokenizer, text, add_special_tokens=True)
        if len(ids) > limit:
            raise EmbeddingError(
                f"Input {i} is {len(ids)} tokens; {loaded.name} reads at most {limit}: shorten it."
            )
        out.append(ids)
    return out


@torch.inference_mode()
def embed(loaded: Any, texts: Sequence[str], pooling: Pooling = "mean") -> Embeddings:
    """Normalized sentence vectors of `texts` under an encoder model (a LoadedModel that is not causal)."""
    if loaded.is_causal:
        raise EmbeddingError(f"{loaded.name} generates text; embeddings come from an encoder model.")
    all_ids = token_ids(loaded, texts)
    pad = loaded.tokenizer.pad_token_id or 0
    vectors: list[list[float]] = []
    for start in range(0, len(all_ids), BATCH):
        batch = all_ids[start : start + BATCH]
        width = max(len(ids) for ids in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, row_ids in enumerate(batch):
            ids[row, : len(row_ids)] = torch.tensor(row_ids)
            mask[row, : len(row_ids)] = 1
        hidden = loaded.model(input_ids=ids.to(loaded.device), attention_mask=mask.to(loaded.device))
        pooled = pool(hidden.last_hidden_state.float(), mask.to(loaded.device), pooling)  # (B, H)
        vectors += torch.nn.functional.normalize(pooled, dim=-1).cpu().tolist()
    return Embeddings(vectors=vectors, token_counts=[len(ids) for ids in all_ids])
