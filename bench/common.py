"""What every benchmark needs: the store with the default model in it."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def default_model_store():
    """The model store (MODEL_DIR, default var/models), with the default model pulled into it."""
    from llmcore.pulls import DEFAULT_MODEL, pull
    from llmcore.store import ModelStore

    store = ModelStore(os.environ.get("MODEL_DIR", ROOT / "var" / "models"))
    pull(DEFAULT_MODEL, store, ROOT / "var" / "cache" / "downloads", progress=print)
    return store
