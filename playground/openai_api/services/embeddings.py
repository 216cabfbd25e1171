"""POST /v1/embeddings on the catalog's encoder models: sentence vectors pooled as each model was
trained (llmcore.embeddings reads its pooling config; mean pooling for all-MiniLM-L6-v2), normalized."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmcore.embeddings import embed, read_pooling
from playground.core.services import model_cache, model_store
from playground.openai_api.errors import OpenAIError
from playground.openai_api.forms import EmbeddingForm, embedding_item, one_or_many, validated
from playground.openai_api.services.catalog import encoder_model


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    inputs: list[str]
    base64: bool


def check_embeddings(user: Any, body: dict[str, Any]) -> EmbeddingRequest:
    data = validated(EmbeddingForm, body, known={"input"})
    if body.get("input") is None:
        raise OpenAIError("input is required: a text or a list of texts.", param="input")
    inputs = one_or_many(body["input"], "input", embedding_item)
    entry = encoder_model(user, data["model"])
    if data.get("dimensions") not in (None, entry.hidden_size):  # pooled vectors are hidden-size wide
        raise OpenAIError(
            f"{entry.name} makes vectors of {entry.hidden_size} dimensions, not {data['dimensions']}.",
            param="dimensions",
        )
    return EmbeddingRequest(entry.name, inputs, data.get("encoding_format") == "base64")


def embeddings(request: EmbeddingRequest) -> dict[str, Any]:
    """The vectors (loads the encoder on first use), as floats or as base64 of little-endian float32."""
    loaded = model_cache().get(request.model)
    result = embed(loaded, request.inputs, read_pooling(model_store().path(request.model)))
    data = [
        {"object": "embedding", "index": i, "embedding": encoded(vector, request.base64)}
        for i, vector in enumerate(result.vectors)
    ]
    tokens = sum(result.token_counts)
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def encoded(vector: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
