"""The catalog as OpenAI's model objects: every model the caller may see (text models for the
completions endpoints, encoders for embeddings), and the checks that a named model fits an endpoint."""

from __future__ import annotations

from typing import Any

from playground.catalog.models import ModelEntry
from playground.catalog.services import ModelNotFound, get_visible_model, local_models
from playground.openai_api.errors import OpenAIError

OWNER_OF_BASE_MODELS = "playground"  # pulled or imported models belong to no one user


def model_object(entry: ModelEntry) -> dict[str, Any]:
    return {
        "id": entry.name,
        "object": "model",
        "created": int(entry.created.timestamp()),
        "owned_by": entry.owner.get_username() if entry.owner else OWNER_OF_BASE_MODELS,
        # vLLM's name for it: a client (or another copy of this playground adding it as a remote
        # model) learns how long a conversation may be
        "max_model_len": entry.context_length,
    }


def model_list(user: Any) -> dict[str, Any]:
    """The models served here: not remote ones, whose servers serve them (their own /v1 lists them)."""
    return {"object": "list", "data": [model_object(e) for e in local_models(user)]}


def model_detail(user: Any, name: str) -> dict[str, Any]:
    return model_object(local_model(user, name))


def local_model(user: Any, name: str) -> ModelEntry:
    """A model the caller may see with its weights here; 404 model_not_found otherwise, as if it were not
    there. A remote model is reached at its own server (the playground is not a proxy)."""
    entry = get_visible_model(user, name)
    if entry.is_remote:
        raise ModelNotFound(name)
    return entry


def fingerprint(entry: ModelEntry) -> str:
    """system_fingerprint: the weights' sha256, short; it changes exactly when the weights do."""
    return f"fp_{entry.sha256[:12]}"


def text_model(user: Any, name: str) -> ModelEntry:
    """A model the caller may see that generates text; 404 or 400 otherwise."""
    entry = local_model(user, name)
    if entry.is_encoder_only:
        raise OpenAIError(
            f"{name} is an encoder: it makes embeddings (POST /v1/embeddings), not text.",
            param="model",
            code="model_not_supported",
        )
    return entry


def encoder_model(user: Any, name: str) -> ModelEntry:
    entry = local_model(user, name)
    if not entry.is_encoder_only:
        raise OpenAIError(
            f"{name} generates text; embeddings come from an encoder model (GET /v1/models lists them).",
            param="model",
            code="model_not_supported",
        )
    return entry
