"""A real engine on the tiny model, started through the chat service, that has generated a few tokens."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.core.cache import cache

from llmcore.engine import Engine, GenerationRequest, TokenEvent
from llmcore.sampling import SamplingConfig
from playground.chat.services import engine_for
from playground.engine.services import REGISTRY_KEY


@dataclass
class Running:
    engine: Engine
    worker: str

    def generate(self, tokens: int) -> int:
        """Generate exactly `tokens` tokens (greedy, end-of-turn ignored); returns how many came."""
        request = GenerationRequest(
            prompt_ids=[5, 6, 7, 8],
            sampling=SamplingConfig(temperature=0.0),
            max_new_tokens=tokens,
            ignore_stop_tokens=True,
        )
        return sum(isinstance(e, TokenEvent) for e in self.engine.generate(request))


@pytest.fixture
def running(tiny_model) -> Running:
    cache.delete(REGISTRY_KEY)  # no workers left over from another test
    engine = engine_for("tiny-llama")
    return Running(engine, engine.metrics()["worker"])


@pytest.fixture
def generated(running: Running) -> int:
    """The number of tokens the engine generated: 7."""
    assert running.generate(7) == 7
    return 7
