"""The chat tests' site as the web server leaves it after its start: the model the chat starts with is
loaded with its engine (PRELOAD_DEFAULT_MODEL), so a socket's first frame is "started". The tests of the
wait before a model's first answer unload it first (test_socket_waits.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def preloaded(request):
    if "tiny_model" in request.fixturenames:
        request.getfixturevalue("tiny_model")
        from playground.chat import services

        services.engine_for("tiny-llama")
