"""The llmcore tests' tiny model loaded, and an engine on it (a test file may define its own instead)."""

from __future__ import annotations

import pytest

from llmcore.engine import Engine
from llmcore.loading import load_model


@pytest.fixture
def loaded(store, tiny_model):
    return load_model(store, "tiny-llama", device="cpu")


@pytest.fixture
def engine(loaded):
    with Engine(loaded) as eng:
        yield eng
