"""What every inspect tool needs: the models to pick from, and a loaded model by name."""

from __future__ import annotations

from typing import Any

from llmcore.loading import LoadedModel
from playground.catalog.services import get_visible_model, visible_models
from playground.core.services import model_cache


class InspectError(ValueError):
    """Input a tool cannot take (too long, wrong kind of model...); the message is for the user."""


def model_choices(user: Any = None, causal_only: bool = False) -> list[tuple[str, str]]:
    """(name, label) of every catalog model this user may use; causal_only leaves out encoder-only
    models. No user: the shared models only."""
    entries = [e for e in visible_models(user) if not (causal_only and e.is_encoder_only)]
    return [(e.name, f"{e.name} ({e.family}, {e.parameters / 1e6:.0f} M)") for e in entries]


def default_model_name(user: Any = None) -> str | None:
    from llmcore.pulls import DEFAULT_MODEL

    names = [name for name, _ in model_choices(user)]
    return DEFAULT_MODEL if DEFAULT_MODEL in names else (names[0] if names else None)


def get_loaded(name: str, user: Any = None) -> LoadedModel:
    """The model loaded in this process (loading it on first use); the name must be a catalog model the
    user may see (else LookupError, worded like an unknown model)."""
    get_visible_model(user, name)
    return model_cache().get(name)
