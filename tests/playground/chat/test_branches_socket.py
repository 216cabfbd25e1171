"""Branch actions over the chat socket (real ASGI app, tiny model): regenerate, continue, edit, branch
from a token and replay, each a new version of a turn; and everything they refuse."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from playground.chat import services
from playground.chat.models import Conversation, Message
from tests.playground.chat.test_consumer import (
    headers_for,
    open_socket,
    run,
    send_frame,
    still_answers_ping,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def exchange(communicator: WebsocketCommunicator, *frames: dict[str, Any]) -> list[list[dict]]:
    """Send each frame in turn; the frames each one got back, up to its "done" (or "error")."""
    replies = []
    for frame in frames:
        await communicator.send_json_to(frame)
        got = []
        while True:
            reply = await communicator.receive_json_from(timeout=60)
            got.append(reply)
            if reply["type"] in ("done", "error"):
                break
        replies.append(got)
    return replies


def talk(user, *frames: dict[str, Any]) -> list[list[dict]]:
    headers = headers_for(user)

    async def scenario() -> list[list[dict]]:
        communicator = await open_socket(headers)
        replies = await exchange(communicator, *frames)
        assert await still_answers_ping(communicator)
        await communicator.disconnect()
        return replies

    return run(scenario())


def action(name: str, conversation: int, message: int, **extra: Any) -> dict[str, Any]:
    return {"type": "send", "action": name, "conversation": conversation, "message": message, **extra}


def first_answer(user, **settings: Any) -> Message:
    (frames,) = talk(user, send_frame("Tell me a story", **settings))
    return Message.objects.get(pk=frames[-1]["message"])


def conversation_page(user, conversation_id: int) -> str:
    client = Client()
    client.force_login(user)
    return client.get(f"/chat/{conversation_id}/").content.decode()


def shown(conversation_id: int) -> list[str]:
    return [m.content for m in services.history(Conversation.objects.get(pk=conversation_id))]


def test_regenerate_adds_an_answer_to_the_same_message_with_a_fresh_seed(user, tiny_model) -> None:
    old = first_answer(user, seed=7, max_new_tokens=16)
    frame = action("regenerate", old.conversation_id, old.pk, settings={"seed": None, "max_new_tokens": 16})
    ((started, *_, done),) = talk(user, frame)
    assert started["action"] == "regenerate"
    assert started["source"] == old.pk
    assert started["parent"] == started["user_message"] == old.parent_id
    new = Message.objects.get(pk=done["message"])
    assert new.pk != old.pk
    assert (new.role, new.parent_id, new.content) == ("assistant", old.parent_id, done["text"])
    assert new.provenance["action"] == "regenerate"
    assert new.provenance["source"] == old.pk
    assert new.provenance["seed"] != old.provenance["seed"] == 7
    assert Message.objects.filter(role="user").count() == 1
    history = services.history(Conversation.objects.get(pk=old.conversation_id))
    assert [m.pk for m in history] == [old.parent_id, new.pk]
    assert history[-1].versions == services.Versions(index=2, count=2, previous=old.pk, next=None)


def test_continue_extends_a_length_cut_answer_as_a_new_version(user, tiny_model) -> None:
    old = first_answer(user, temperature=0, max_new_tokens=6)  # greedy on the tiny model never ends itself
    assert old.provenance["stats"]["stop_reason"] == "length"
    ((started, *rest),) = talk(user, action("continue", old.conversation_id, old.pk))
    tokens = [f for f in rest if f["type"] == "token"]
    done = rest[-1]
    assert started["prefix"] == old.content
    assert started["prefix_tokens"] == 6
    assert [t["index"] for t in tokens] == list(range(6, 6 + len(tokens)))  # they count on after the prefix
    assert done["text"] == old.content + "".join(t["text"] for t in tokens) + done["tail"]
    new = Message.objects.get(pk=done["message"])
    assert new.parent_id == old.parent_id
    assert new.content == done["text"]
    assert len(new.content) > len(old.content)
    assert new.tokens[:6] == old.tokens  # the forced prefix keeps its inspector data
    assert len(new.tokens) == 6 + len(tokens)
    assert new.prompt_ids == old.prompt_ids
    assert new.provenance["action"] == "continue"
    assert new.provenance["forced_tokens"] == 6
    assert new.provenance["stats"]["prompt_tokens"] == len(old.prompt_ids) + 6  # the prefix is prompt


def test_continue_is_refused_for_a_finished_answer_and_for_a_user_message(user, tiny_model) -> None:
    old = first_answer(user, max_new_tokens=4)
    Message.objects.filter(pk=old.pk).update(provenance={**old.provenance, "stats": {"stop_reason": "stop"}})
    finished, mine = talk(
        user,
        action("continue", old.conversation_id, old.pk),
        action("continue", old.conversation_id, old.parent_id),
    )
    assert finished == [{"type": "error", "error": finished[0]["error"]}]
    assert "stopped or cut by max new tokens" in finished[0]["error"]
    assert "works on the model's answers" in mine[0]["error"]
    assert Message.objects.count() == 2


def test_edit_adds_a_new_version_of_the_user_message_and_answers_it(user, tiny_model) -> None:
    first = first_answer(user, max_new_tokens=4)
    (second,) = talk(user, send_frame("And then?", conversation=first.conversation_id, max_new_tokens=4))
    question = Message.objects.get(pk=second[0]["user_message"])
    frame = action("edit", first.conversation_id, question.pk, content="What next?")
    ((started, *_, done),) = talk(user, frame)
    edited = Message.objects.get(pk=started["user_message"])
    assert started["parent"] == edited.pk != question.pk
    assert (edited.role, edited.content, edited.parent_id) == ("user", "What next?", question.parent_id)
    assert edited.provenance == {"action": "edit", "source": question.pk}
    assert Message.objects.get(pk=done["message"]).parent_id == edited.pk
    history = shown(first.conversation_id)
    assert history[:3] == ["Tell me a story", first.content, "What next?"]
    assert len(history) == 4
    assert Message.objects.filter(content="And then?").exists()  # the original stays as a version


def test_editing_the_first_message_starts_a_second_version_of_the_whole_conversation(
    user, tiny_model
) -> None:
    first = first_answer(user, max_new_tokens=4)
    ((started, *_, done),) = talk(user, action("edit", first.conversation_id, first.parent_id, content="Hi"))
    conversation = Conversation.objects.get(pk=first.conversation_id)
    history = services.history(conversation)
    assert [m.pk for m in history] == [started["user_message"], done["message"]]
    assert history[0].parent_id is None
    # the first version goes on for one message (its answer), which the page points back to
    assert history[0].versions == services.Versions(
        index=2, count=2, previous=first.parent_id, next=None, later_elsewhere=((1, 1),)
    )
    assert started["prompt_tokens"] < first.provenance["prompt_tokens"]  # "Hi" alone, not the old turn


def test_branch_keeps_the_first_tokens_then_the_chosen_one(user, tiny_model) -> None:
    old = first_answer(user, temperature=0, max_new_tokens=10)
    at = 3
    original = old.tokens[at]
    other_id, _, other_prob, _ = next(a for a in original[3] if a[0] != original[0])
    frame = action("branch", old.conversation_id, old.pk, at=at, token=other_id)
    ((started, *rest),) = talk(user, frame)
    done = rest[-1]
    new = Message.objects.get(pk=done["message"])
    assert started["prefix_tokens"] == at + 1
    assert [t[0] for t in new.tokens[:at]] == [t[0] for t in old.tokens[:at]]
    assert new.tokens[:at] == old.tokens[:at]
    assert new.tokens[at][0] == other_id
    assert new.tokens[at][2] == pytest.approx(other_prob)  # the probability the answer's step gave it
    assert new.content.startswith("".join(t[1] for t in old.tokens[:at]))
    assert (
        new.content
        == done["text"]
        == started["prefix"] + "".join(f["text"] for f in rest[:-2]) + done["tail"]
    )
    assert "".join(t[1] for t in new.tokens) + done["tail"] == new.content  # tokens cover the whole text
    assert new.parent_id == old.parent_id
    assert new.provenance["action"] == "branch"
    assert new.provenance["forced_tokens"] == at + 1


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"at": 99, "token": 5}, "Token index 99 is out of range"),
        ({"at": -1, "token": 5}, '"branch" needs "at": a whole number from 0 to'),
        ({"at": 0, "token": 10**6}, "not in the model's vocabulary"),
        ({"at": 0, "token": -3}, '"branch" needs "token": a whole number from 0 to'),
        ({"at": True, "token": 5}, '"branch" needs "at"'),
        ({"at": 0}, '"branch" needs "token"'),
        ({"at": 0, "token": "the"}, '"branch" needs "token"'),
    ],
)
def test_bad_branch_points_are_refused_and_the_socket_stays_usable(user, tiny_model, extra, expected) -> None:
    old = first_answer(user, temperature=0, max_new_tokens=4)
    ((error,),) = talk(user, action("branch", old.conversation_id, old.pk, **extra))
    assert error["type"] == "error"
    assert expected in error["error"]
    assert Message.objects.count() == 2


def test_branching_on_an_end_of_turn_token_is_refused(user, tiny_model) -> None:
    old = first_answer(user, temperature=0, max_new_tokens=4)
    end = services.engine_for("tiny-llama").tokenizer.convert_tokens_to_ids("<|im_end|>")
    ((error,),) = talk(user, action("branch", old.conversation_id, old.pk, at=1, token=end))
    assert "ends the answer" in error["error"]


def test_replay_gives_the_same_text_with_the_same_seed_and_settings(user, tiny_model) -> None:
    old = first_answer(user, temperature=1.0, top_p=0.95, seed=None, max_new_tokens=24)
    # Replay ignores the panel's settings: it uses the answer's own.
    frame = action("replay", old.conversation_id, old.pk, settings={"temperature": 0.1, "seed": 1})
    ((started, *_, done),) = talk(user, frame)
    new = Message.objects.get(pk=done["message"])
    assert started["seed"] == old.provenance["seed"]
    assert new.content == old.content
    assert [t[0] for t in new.tokens] == [t[0] for t in old.tokens]
    assert new.provenance["sampling"] == old.provenance["sampling"]
    assert new.provenance["action"] == "replay"
    assert new.parent_id == old.parent_id
    assert new.provenance["replay"] == {"matches": True, "parted_at": None, "reasons": []}
    page = conversation_page(user, old.conversation_id)
    assert "Replay of the answer it came from: the same" in page


def test_a_replay_that_parts_from_its_original_says_where_and_what_differed(user, tiny_model) -> None:
    """An original decoded beside other answers, with another prefix-cache split, can differ in its last
    bits: made here by editing the saved original (a flip cannot be forced on a real batch)."""
    old = first_answer(user, temperature=1.0, seed=3, max_new_tokens=12)
    tokens = [list(t) for t in old.tokens]
    tokens[5][0] = (tokens[5][0] + 1) % 100
    old.tokens = tokens
    old.provenance["stats"]["batch_size_max"] = 3
    old.provenance["stats"]["cached_prompt_tokens"] = 32
    old.provenance["split_invariant"] = False
    old.save()
    ((*_, done),) = talk(user, action("replay", old.conversation_id, old.pk))
    report = Message.objects.get(pk=done["message"]).provenance["replay"]
    assert report["matches"] is False
    assert report["parted_at"] == 5
    assert "up to 3 rows" in report["reasons"][0]
    assert "the prefix cache gave 32 and then" in report["reasons"][1]
    assert len(report["reasons"]) == 2
    page = conversation_page(user, old.conversation_id)
    assert "parted from its original at token 6" in page
    assert "up to 3 rows" in page


def test_replaying_a_branch_forces_the_same_start_and_gives_the_same_text(user, tiny_model) -> None:
    old = first_answer(user, temperature=0, max_new_tokens=8)
    chosen = next(a[0] for a in old.tokens[2][3] if a[0] != old.tokens[2][0])
    settings = {"temperature": 1.2, "seed": None, "max_new_tokens": 12}
    ((*_, branched),) = talk(
        user, action("branch", old.conversation_id, old.pk, at=2, token=chosen, settings=settings)
    )
    source = Message.objects.get(pk=branched["message"])
    ((started, *_, done),) = talk(user, action("replay", old.conversation_id, source.pk))
    assert started["prefix_tokens"] == 3
    assert done["text"] == source.content
    assert Message.objects.get(pk=done["message"]).tokens[:3] == source.tokens[:3]


def test_another_users_message_is_refused(user, django_user_model, tiny_model) -> None:
    bob = django_user_model.objects.create_user(username="bob", password="another long passphrase")
    theirs = first_answer(bob, max_new_tokens=4)
    mine = first_answer(user, max_new_tokens=4)
    replies = talk(
        user,
        *[action(a, mine.conversation_id, theirs.pk) for a in ("regenerate", "continue", "replay")],
        action("edit", mine.conversation_id, theirs.parent_id, content="Mine now"),
        action("regenerate", theirs.conversation_id, theirs.pk),  # their conversation: not found at all
    )
    errors = [r[0]["error"] for r in replies]
    assert errors[:4] == [f"No message {theirs.pk} in this conversation."] * 3 + [
        f"No message {theirs.parent_id} in this conversation."
    ]
    assert errors[4] == f"No conversation {theirs.conversation_id}."
    assert Message.objects.count() == 4


def test_a_message_of_another_conversation_is_refused(user, tiny_model) -> None:
    one = first_answer(user, max_new_tokens=4)
    two = first_answer(user, max_new_tokens=4)
    ((error,),) = talk(user, action("regenerate", two.conversation_id, one.pk))
    assert error["error"] == f"No message {one.pk} in this conversation."


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"action": "rewind"}, "Unknown action"),
        ({"action": "regenerate"}, '"regenerate" needs "message"'),
        ({"action": "regenerate", "message": "7"}, '"regenerate" needs "message"'),
        ({"action": "edit", "message": 1, "conversation": None, "content": "x"}, 'needs the "conversation"'),
    ],
)
def test_bad_action_frames_get_a_clear_error(user, tiny_model, frame, expected) -> None:
    ((error,),) = talk(user, send_frame() | frame)
    assert error["type"] == "error"
    assert expected in error["error"]
    assert not Message.objects.exists()


def test_an_edit_still_needs_text(user, tiny_model) -> None:
    old = first_answer(user, max_new_tokens=4)
    ((error,),) = talk(user, action("edit", old.conversation_id, old.parent_id, content="  "))
    assert error["fields"] == {"content": ["Type a message."]}


def test_a_new_message_follows_the_branch_shown(user, tiny_model) -> None:
    old = first_answer(user, max_new_tokens=4)
    talk(user, action("regenerate", old.conversation_id, old.pk, settings={"max_new_tokens": 4}))
    services.show_version(user, old.pk)  # back to the first answer
    ((started, *_),) = talk(user, send_frame("Next", conversation=old.conversation_id, max_new_tokens=4))
    question = Message.objects.get(pk=started["user_message"])
    assert question.parent_id == old.pk
    assert shown(old.conversation_id)[:2] == ["Tell me a story", old.content]
