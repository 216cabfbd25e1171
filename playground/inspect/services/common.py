"""What every inspect tool needs: the models to pick from, and a loaded model by name."""

from __future__ import annotations

from typing import Any

from llmcore.loading import LoadedModel
from playground.catalog.services import (
    check_local,
    default_model_of,
    get_visible_model,
    local_models,
    text_models,
)
from playground.core.services import PlaygroundError, model_cache


class InspectError(PlaygroundError, ValueError):
    """Input a tool cannot take (too long, wrong kind of model...); the message is for the user."""


def model_choices(user: Any = None, causal_only: bool = False) -> list[tuple[str, str]]:
    """(name, label) of every catalog model with its weights here that this user may use; causal_only
    leaves out encoder-only models. No user: the shared models only."""
    entries = text_models(user) if causal_only else local_models(user)
    return [(e.name, f"{e.name} ({e.family}, {e.parameters / 1e6:.0f} M)") for e in entries]


def default_model_name(user: Any = None) -> str | None:
    return default_model_of([name for name, _ in model_choices(user)])


def get_loaded(name: str, user: Any = None) -> LoadedModel:
    """The model loaded in this process (loading it on first use); the name must be a catalog model the
    user may see (else LookupError, worded like an unknown model), with its weights here (a remote model:
    NeedsWeights, which says so)."""
    check_local(get_visible_model(user, name), "the inspect tools")
    return model_cache().get(name)
