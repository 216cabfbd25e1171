"""Best-of-N and beam search through the real chat socket on the tiny model: the candidates are sent,
saved in the answer's provenance and shown under it; beam search is deterministic."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse

from playground.asgi import application
from playground.chat import services
from playground.chat.models import Message

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


def headers_for(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [*ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def exchange(user, *settings: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Send one message per settings dict on one socket; the frames of each, up to "done" or "error"."""

    headers = headers_for(user)

    async def scenario() -> list[list[dict[str, Any]]]:
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        answers = []
        for s in settings:
            frame = {"type": "send", "conversation": None, "model": "tiny-llama", "content": "Hello there"}
            await communicator.send_json_to({**frame, "settings": {"max_new_tokens": 12, **s}})
            frames = []
            while not frames or frames[-1]["type"] not in ("done", "error"):
                frames.append(await communicator.receive_json_from(timeout=60))
            answers.append(frames)
        await communicator.disconnect()
        return answers

    return asyncio.run(scenario())


def test_best_of_keeps_the_best_mean_logprob_and_saves_every_candidate(user, tiny_model) -> None:
    [frames] = exchange(user, {"temperature": 1.0, "seed": 7, "best_of": 3})
    done = frames[-1]
    assert done["type"] == "done"
    assert done["reason"] in ("stop", "length")
    candidates = done["candidates"]
    assert len(candidates) == 3
    assert sorted(c["seed"] for c in candidates) == [7, 8, 9]  # candidate i samples with seed + i
    assert candidates[0]["mean_logprob"] == max(c["mean_logprob"] for c in candidates)
    assert done["text"] == candidates[0]["text"]
    # Only the chosen candidate streams: its tokens spell its text.
    assert "".join(f["text"] for f in frames if f["type"] == "token") + done["tail"] == done["text"]

    message = Message.objects.get(pk=done["message"])
    assert message.content == candidates[0]["text"]
    assert message.provenance["candidates"] == candidates
    assert message.provenance["best_of"] == 3
    assert message.provenance["num_beams"] == 1

    client = Client()
    client.force_login(user)
    page = client.get(reverse("chat:message", args=[message.pk])).content.decode()
    assert "Other candidates (2)" in page
    assert "best of 3" in page
    for c in candidates[1:]:
        assert f"mean log-prob {c['mean_logprob']:.3f}" in page
        assert f"seed {c['seed']}" in page


def test_best_of_is_reproducible_from_its_seed(user, tiny_model) -> None:
    a, b = exchange(user, *[{"temperature": 1.0, "seed": 11, "best_of": 2}] * 2)
    assert a[-1]["candidates"] == b[-1]["candidates"]


def test_beam_search_answers_deterministically_whatever_the_seed(user, tiny_model) -> None:
    a, b = exchange(
        user,
        {"num_beams": 3, "seed": 1, "max_new_tokens": 10},
        {"num_beams": 3, "seed": 2, "max_new_tokens": 10},
    )
    assert a[-1]["type"] == "done"
    assert a[-1]["reason"] in ("stop", "length")
    assert a[-1]["text"] == b[-1]["text"]
    assert a[-1]["text"]
    assert a[-1]["candidates"] == []
    message = Message.objects.get(pk=a[-1]["message"])
    assert message.provenance["num_beams"] == 3
    assert "candidates" not in message.provenance
    client = Client()
    client.force_login(user)
    page = client.get(reverse("chat:message", args=[message.pk])).content.decode()
    assert "3 beams" in page
    assert "Other candidates" not in page


def test_best_of_and_beams_together_are_refused_with_a_reason(user, tiny_model) -> None:
    [frames] = exchange(user, {"best_of": 2, "num_beams": 2})
    assert frames[-1]["type"] == "error"
    assert frames[-1]["fields"]["num_beams"] == [
        "Choose best-of-N or beam search, not both: set one of them to 1."
    ]
    [frames] = exchange(user, {"best_of": 9})
    assert frames[-1]["fields"]["best_of"] == ["Ensure this value is less than or equal to 8."]
    assert not Message.objects.exists()


def test_candidate_text_is_shown_as_text(client_in: Client, user, tiny_model) -> None:
    conversation = services.create_conversation(user, "tiny-llama")
    message = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="fine",
        provenance={
            "model": "tiny-llama",
            "best_of": 2,
            "candidates": [
                {"text": "fine", "mean_logprob": -0.5, "reason": "stop", "seed": 1},
                {"text": "<img src=x onerror=alert(1)>", "mean_logprob": None, "reason": "length", "seed": 2},
            ],
        },
    )
    page = client_in.get(reverse("chat:message", args=[message.pk])).content.decode()
    assert "Other candidates (1)" in page
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "mean log-prob – · seed 2" in page
