"""What every inspect tool needs: the models to pick from, and a loaded model by name."""

from __future__ import annotations

from llmcore.loading import LoadedModel
from playground.catalog.models import ModelEntry
from playground.catalog.services import sync_catalog
from playground.core.services import model_cache


class InspectError(ValueError):
    """Input a tool cannot take (too long, wrong kind of model...); the message is for the user."""


def model_choices(causal_only: bool = False) -> list[tuple[str, str]]:
    """(name, label) of every catalog model; causal_only leaves out encoder-only models."""
    entries = [e for e in sync_catalog() if not (causal_only and e.is_encoder_only)]
    return [(e.name, f"{e.name} ({e.family}, {e.parameters / 1e6:.0f} M)") for e in entries]


def default_model_name() -> str | None:
    from llmcore.pulls import DEFAULT_MODEL

    names = [name for name, _ in model_choices()]
    return DEFAULT_MODEL if DEFAULT_MODEL in names else (names[0] if names else None)


def get_loaded(name: str) -> LoadedModel:
    """The model loaded in this process (loading it on first use); the name must be in the catalog."""
    if not ModelEntry.objects.filter(name=name).exists():
        sync_catalog()
        if not ModelEntry.objects.filter(name=name).exists():
            raise LookupError(f"No model named {name!r} in the catalog.")
    return model_cache().get(name)
