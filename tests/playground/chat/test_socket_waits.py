"""What the chat socket says before the first token: a model loading for its first answer, a long prompt's
progress (real ASGI app, tiny model)."""

from __future__ import annotations

import pytest

from playground.chat import services
from playground.core.services import model_cache
from tests.playground.chat.test_branches_socket import talk
from tests.playground.chat.test_consumer import send_frame

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_first_answer_of_a_model_says_it_loads_and_a_long_prompt_says_how_far_it_is(
    user, tiny_model, settings
) -> None:
    settings.ENGINE_PREFILL_CHUNK = 16  # the engine made after the unload reads 16 prompt tokens a step
    model_cache().forget("tiny-llama")
    assert not services.engine_ready("tiny-llama")
    long_message = "Tell me about the sea, the waves, the wind and the boats on it. " * 4
    ((loading, started, *rest),) = talk(user, send_frame(long_message, max_new_tokens=2))
    assert loading == {"type": "loading", "model": "tiny-llama"}
    assert started["type"] == "started"
    progress = [f for f in rest if f["type"] == "prefill"]
    total = started["prompt_tokens"]
    assert [f["done"] for f in progress] == list(range(16, total, 16))
    assert {f["total"] for f in progress} == {total}
    first_token = next(i for i, f in enumerate(rest) if f["type"] == "token")
    assert rest.index(progress[-1]) < first_token
    assert services.engine_ready("tiny-llama")
    ((again, *_),) = talk(user, send_frame("Hi", max_new_tokens=2))
    assert again["type"] == "started"  # loaded: no wait to announce


def test_the_web_server_preloads_the_default_model_unless_told_not_to(tiny_model, settings) -> None:
    model_cache().forget("tiny-llama")
    settings.PRELOAD_DEFAULT_MODEL = False
    assert services.preload_in_background() is None
    assert not services.engine_ready("tiny-llama")
    settings.PRELOAD_DEFAULT_MODEL = True
    thread = services.preload_in_background()
    assert thread is not None
    thread.join(60)
    assert services.engine_ready("tiny-llama")  # the store's only text model stands in for the default
