"""The chat socket through the real ASGI app (origin check, session auth), on the tiny model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from playground.asgi import application
from playground.chat.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
# Greedy decoding on the random tiny model repeats itself without ever ending the turn: a long answer.
LONG = {"temperature": 0, "max_new_tokens": 200}


def headers_for(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [*ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def open_socket(headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def frames_until(communicator: WebsocketCommunicator, kind: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=30)
        frames.append(frame)
        if frame["type"] == kind:
            return frames


def send_frame(content: str = "Hello there", conversation: int | None = None, **settings: Any) -> dict:
    return {
        "type": "send",
        "conversation": conversation,
        "model": "tiny-llama",
        "content": content,
        "settings": {"temperature": 0.8, "seed": 7, "max_new_tokens": 12, **settings},
    }


async def still_answers_ping(communicator: WebsocketCommunicator) -> bool:
    await communicator.send_json_to({"type": "ping"})
    return (await frames_until(communicator, "pong"))[-1] == {"type": "pong"}


def run(coro) -> Any:
    return asyncio.run(coro)


def test_anonymous_sockets_are_closed_with_4401() -> None:
    async def scenario() -> dict:
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=ORIGIN)
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        return await communicator.receive_output(timeout=5)

    assert run(scenario()) == {"type": "websocket.close", "code": 4401}


def test_a_foreign_origin_is_refused(user) -> None:
    headers = [(b"origin", b"http://evil.example"), *headers_for(user)[1:]]

    async def scenario() -> bool:
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        return connected

    assert run(scenario()) is False


def test_send_streams_tokens_and_saves_the_answer_with_provenance(user, tiny_model) -> None:
    headers = headers_for(user)
    settings = {"temperature": 0.9, "top_k": 50, "top_p": 0.95, "min_p": 0.01, "repetition_penalty": 1.1}

    async def scenario() -> list[dict]:
        communicator = await open_socket(headers)
        await communicator.send_json_to(send_frame("Tell me a story", **settings, seed=1234))
        frames = await frames_until(communicator, "done")
        await communicator.disconnect()
        return frames

    frames = run(scenario())
    started, *tokens, stats, done = frames
    assert started["type"] == "started"
    assert tokens
    assert all(t["type"] == "token" for t in tokens)
    assert stats["type"] == "stats"
    assert stats["generated_tokens"] == len(tokens)
    assert "".join(t["text"] for t in tokens) + done["tail"] == done["text"]
    assert done["reason"] in ("stop", "length")

    conversation = Conversation.objects.get(pk=started["conversation"])
    assert conversation.owner == user
    assert conversation.title == "Tell me a story"
    assert conversation.sampler_settings["top_k"] == 50
    user_message, answer = conversation.messages.all()
    assert (user_message.role, user_message.content) == ("user", "Tell me a story")
    assert answer.pk == started["message"] == done["message"]
    assert (answer.role, answer.status, answer.content) == ("assistant", "complete", done["text"])
    assert answer.parent == user_message
    provenance = answer.provenance
    assert provenance["model"] == "tiny-llama"
    assert provenance["weights_sha256"] == tiny_model.sha256
    assert provenance["seed"] == 1234
    assert provenance["decode"]["kind"] == "float"  # random weights: nothing on a 4-bit grid to pack
    assert provenance["attention"] == "sdpa-auto"  # the engine's own record, not one the chat rebuilt
    assert provenance["prompt_tokens"] == started["prompt_tokens"] == stats["prompt_tokens"] > 0
    for key, value in settings.items():
        assert provenance["sampling"][key] == value
    assert provenance["max_new_tokens"] == 12
    assert provenance["stats"]["stop_reason"] == done["reason"]
    assert provenance["stats"]["generated_tokens"] == len(tokens)


def test_the_same_seed_gives_the_same_answer(user, tiny_model) -> None:
    headers = headers_for(user)

    async def answer(seed: int) -> str:
        communicator = await open_socket(headers)
        await communicator.send_json_to(send_frame("Replay me", seed=seed, max_new_tokens=20))
        done = (await frames_until(communicator, "done"))[-1]
        await communicator.disconnect()
        return done["text"]

    first, again, other = run(answer(42)), run(answer(42)), run(answer(43))
    assert first == again
    assert first != other


def test_a_conversation_continues_with_its_history(user, tiny_model) -> None:
    headers = headers_for(user)

    async def scenario() -> tuple[dict, dict]:
        communicator = await open_socket(headers)
        await communicator.send_json_to(send_frame("First"))
        first = (await frames_until(communicator, "done"))[0]
        # Only the new content: the model and settings come from the conversation.
        await communicator.send_json_to(
            {"type": "send", "conversation": first["conversation"], "content": "Second"}
        )
        second = (await frames_until(communicator, "done"))[0]
        await communicator.disconnect()
        return first, second

    first, second = run(scenario())
    assert second["conversation"] == first["conversation"]
    assert second["prompt_tokens"] > first["prompt_tokens"]
    contents = [m.content for m in Conversation.objects.get(pk=first["conversation"]).messages.all()]
    assert len(contents) == 4
    assert contents[0::2] == ["First", "Second"]


def test_stop_halts_the_stream_and_keeps_the_partial_answer(user, tiny_model) -> None:
    headers = headers_for(user)

    async def scenario() -> list[dict]:
        communicator = await open_socket(headers)
        await communicator.send_json_to(send_frame("Go on", **LONG))
        frames = await frames_until(communicator, "token")
        await communicator.send_json_to({"type": "stop"})
        frames += await frames_until(communicator, "done")
        assert await still_answers_ping(communicator)
        await communicator.disconnect()
        return frames

    frames = run(scenario())
    done = frames[-1]
    tokens = [f for f in frames if f["type"] == "token"]
    assert done["reason"] == "cancelled"
    assert len(tokens) < 200
    assert "".join(t["text"] for t in tokens) == done["text"]
    answer = Message.objects.get(pk=done["message"])
    assert answer.status == "stopped"
    assert answer.content == done["text"]
    assert answer.provenance["stats"]["stop_reason"] == "cancelled"


def test_leaving_mid_answer_saves_the_partial_answer_as_stopped(user, tiny_model) -> None:
    headers = headers_for(user)

    async def scenario() -> dict:
        communicator = await open_socket(headers)
        await communicator.send_json_to(send_frame("Go on", **LONG))
        started = (await frames_until(communicator, "token"))[0]
        await communicator.disconnect(timeout=15)
        return started

    started = run(scenario())
    answer = Message.objects.get(pk=started["message"])
    assert answer.status == "stopped"
    assert answer.provenance["stats"]["stop_reason"] == "cancelled"
    assert answer.provenance["stats"]["generated_tokens"] < 200
    assert Message.objects.filter(conversation_id=started["conversation"], role="user").count() == 1


def test_a_second_send_while_streaming_is_refused(user, tiny_model) -> None:
    headers = headers_for(user)

    async def scenario() -> list[dict]:
        communicator = await open_socket(headers)
        await communicator.send_json_to(send_frame("Go on", **LONG))
        await frames_until(communicator, "started")
        await communicator.send_json_to(send_frame("Me too"))
        frames = await frames_until(communicator, "error")
        await communicator.send_json_to({"type": "stop"})
        frames += await frames_until(communicator, "done")
        await communicator.disconnect()
        return frames

    frames = run(scenario())
    assert "still streaming" in next(f for f in frames if f["type"] == "error")["error"]
    assert [f["type"] for f in frames].count("started") == 0
    assert Message.objects.filter(role="user").count() == 1


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("this is not json", "not valid JSON"),
        ("x" * (300 * 1024), "too large"),
        (json.dumps([1, 2]), "JSON object"),
        (json.dumps({"type": "dance"}), "Unknown message type"),
        (json.dumps(send_frame() | {"model": "no-such-model"}), "Unknown model"),
        (json.dumps(send_frame(temperature=-1)), "greater than or equal to 0"),
        (json.dumps(send_frame(temperature="hot")), "Enter a number"),
        (json.dumps(send_frame(max_new_tokens=10**6)), "less than or equal to"),
        (
            json.dumps(send_frame("x" * 16_001)),
            "The message is longer than 16,000 characters (it has 16001): shorten it.",
        ),
        (json.dumps(send_frame("   ")), "Type a message"),
        (json.dumps(send_frame() | {"system": "s" * 4001}), "longer than 4,000 characters (it has 4001)"),
        (json.dumps(send_frame(stop_sequences=[""])), "stop sequence"),
        (json.dumps(send_frame() | {"settings": [1]}), "settings must be an object"),
        (json.dumps(send_frame(max_new_tokens=255) | {"content": "word " * 200}), "does not fit"),
    ],
)
def test_bad_frames_get_a_clear_error_and_the_socket_stays_usable(user, tiny_model, frame, expected) -> None:
    headers = headers_for(user)

    async def scenario() -> dict:
        communicator = await open_socket(headers)
        await communicator.send_to(text_data=frame)
        error = await communicator.receive_json_from(timeout=30)
        assert await still_answers_ping(communicator)
        await communicator.disconnect()
        return error

    error = run(scenario())
    assert error["type"] == "error"
    assert expected in error["error"]
    assert not Message.objects.exists()


def test_binary_frames_are_refused(user) -> None:
    headers = headers_for(user)

    async def scenario() -> dict:
        communicator = await open_socket(headers)
        await communicator.send_to(bytes_data=b"\x00\x01")
        error = await communicator.receive_json_from(timeout=10)
        assert await still_answers_ping(communicator)
        await communicator.disconnect()
        return error

    assert "not binary" in run(scenario())["error"]


def test_another_users_conversation_is_out_of_reach(user, django_user_model, tiny_model) -> None:
    bob = django_user_model.objects.create_user(username="bob", password="another long passphrase")
    theirs = Conversation.objects.create(owner=bob, model_name="tiny-llama", title="Bob's secrets")
    headers = headers_for(user)

    async def scenario() -> dict:
        communicator = await open_socket(headers)
        await communicator.send_json_to(send_frame("Let me in", conversation=theirs.pk))
        error = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return error

    error = run(scenario())
    assert error == {"type": "error", "error": f"No conversation {theirs.pk}."}
    assert not theirs.messages.exists()
