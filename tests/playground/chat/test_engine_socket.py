"""What the engine's batching, prefix cache and speculation look like through the chat socket."""

from __future__ import annotations

import asyncio

import pytest
from django.urls import reverse

from playground.chat.models import Message
from playground.core.services import model_cache
from tests.playground.chat.test_consumer import LONG, frames_until, headers_for, open_socket, send_frame

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_full_engine_says_waiting_and_then_answers(user, tiny_model, settings) -> None:
    settings.ENGINE_MAX_SEQUENCES = 1
    model_cache().forget("tiny-llama")  # the preloaded engine had the default limit: the next one has 1

    headers = headers_for(user)

    async def scenario() -> tuple[list[dict], list[dict]]:
        first = await open_socket(headers)
        second = await open_socket(headers)
        await first.send_json_to(send_frame(**LONG))
        await frames_until(first, "token")  # the first answer is running: the engine is full
        await second.send_json_to(send_frame("Me too", max_new_tokens=5))
        waited = await frames_until(second, "done")
        ran = await frames_until(first, "done")
        await first.disconnect()
        await second.disconnect()
        return waited, ran

    waited, ran = asyncio.run(scenario())
    kinds = [f["type"] for f in waited]
    assert "queued" in kinds
    assert kinds.index("queued") < kinds.index("token")
    queued = waited[kinds.index("queued")]
    assert queued["ahead"] == 0
    assert queued["running"] == 1
    assert waited[-1]["reason"] == "length"
    assert ran[-1]["reason"] == "length"
    stats = next(f for f in waited if f["type"] == "stats")
    assert stats["queued_s"] > 0


def test_the_next_turn_comes_from_the_prefix_cache_and_the_page_says_so(user, client_in, tiny_model) -> None:
    headers = headers_for(user)

    async def scenario() -> list[dict]:
        socket = await open_socket(headers)
        await socket.send_json_to(send_frame("Tell me about the sea, at length please", max_new_tokens=30))
        first = await frames_until(socket, "done")
        conversation = first[0]["conversation"]
        await socket.send_json_to(send_frame("And the sky?", conversation=conversation, max_new_tokens=5))
        second = await frames_until(socket, "done")
        await socket.disconnect()
        return second

    second = asyncio.run(scenario())
    stats = next(f for f in second if f["type"] == "stats")
    assert stats["cached_prompt_tokens"] >= 16  # at least one block of the first turn was reused
    message = Message.objects.get(pk=second[-1]["message"])
    assert message.provenance["stats"]["cached_prompt_tokens"] == stats["cached_prompt_tokens"]
    page = client_in.get(reverse("chat:conversation", args=[message.conversation_id])).content.decode()
    assert f"{stats['cached_prompt_tokens']} of {stats['prompt_tokens']} prompt tokens cached" in page


def test_speculative_decoding_is_a_setting_and_its_acceptance_is_saved(user, client_in, tiny_model) -> None:
    headers = headers_for(user)

    async def scenario() -> list[dict]:
        socket = await open_socket(headers)
        frame = send_frame(
            "abc abc abc abc abc",
            temperature=0,
            max_new_tokens=30,
            speculative="prompt_lookup",
            speculative_tokens=3,
        )
        await socket.send_json_to(frame)
        frames = await frames_until(socket, "done")
        await socket.disconnect()
        return frames

    frames = asyncio.run(scenario())
    stats = next(f for f in frames if f["type"] == "stats")
    assert stats["speculative"]["method"] == "prompt_lookup"
    assert stats["speculative"]["proposed"] > 0
    message = Message.objects.get(pk=frames[-1]["message"])
    assert message.provenance["speculative"]["method"] == "prompt_lookup"
    assert message.provenance["speculative"]["num_tokens"] == 3
    saved = message.provenance["stats"]["speculative"]
    assert saved["accepted"] == stats["speculative"]["accepted"]
    page = client_in.get(reverse("chat:conversation", args=[message.conversation_id])).content.decode()
    assert f"speculative {saved['accepted']}/{saved['proposed']} kept" in page
    assert 'name="speculative"' in page
    assert 'name="draft_model"' in page


@pytest.mark.parametrize(
    ("settings_", "field"),
    [
        ({"speculative": "draft"}, "draft_model"),
        ({"speculative": "prompt_lookup", "best_of": 2}, "speculative"),
        ({"speculative": "sometimes"}, "speculative"),
        ({"speculative": "draft", "draft_model": "../etc/passwd"}, "draft_model"),
        ({"speculative_tokens": 99}, "speculative_tokens"),
    ],
)
def test_bad_speculative_settings_are_answered_beside_the_field(user, tiny_model, settings_, field) -> None:
    headers = headers_for(user)

    async def scenario() -> dict:
        socket = await open_socket(headers)
        await socket.send_json_to(send_frame(**settings_))
        frames = await frames_until(socket, "error")
        await socket.disconnect()
        return frames[-1]

    error = asyncio.run(scenario())
    assert field in error["fields"]
