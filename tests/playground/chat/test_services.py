"""Conversation services: owner-scoped create, rename, delete and search; the messages sent to the model."""

from __future__ import annotations

import pytest

from playground.chat import services
from playground.chat.forms import send_form
from playground.chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="another long passphrase")


def test_a_new_conversation_keeps_its_model_system_prompt_and_settings(user) -> None:
    conversation = services.create_conversation(
        user,
        "tiny-llama",
        title="  Plan   a\ntrip ",
        system_prompt="Be brief.",
        sampler_settings={"top_k": 5},
    )
    conversation.refresh_from_db()
    assert conversation.title == "Plan a trip"
    assert conversation.model_name == "tiny-llama"
    assert conversation.system_prompt == "Be brief."
    assert conversation.sampler_settings == {**services.DEFAULT_SETTINGS, "top_k": 5}


def test_long_titles_are_shortened(user) -> None:
    conversation = services.create_conversation(user, "m", title="word " * 40)
    assert len(conversation.title) <= services.TITLE_CHARS
    assert conversation.title.endswith("…")


def test_rename_and_delete_only_reach_your_own_conversations(user, bob) -> None:
    mine = services.create_conversation(user, "m", title="Mine")
    theirs = services.create_conversation(bob, "m", title="Theirs")
    assert services.rename_conversation(user, mine.pk, "Renamed").title == "Renamed"
    with pytest.raises(services.ChatError):
        services.rename_conversation(user, theirs.pk, "Hijacked")
    with pytest.raises(services.ChatError):
        services.delete_conversation(user, theirs.pk)
    services.delete_conversation(user, mine.pk)
    assert list(Conversation.objects.values_list("title", flat=True)) == ["Theirs"]


def test_deleting_a_conversation_deletes_its_messages(user) -> None:
    conversation = services.create_conversation(user, "m")
    Message.objects.create(conversation=conversation, role="user", content="hi")
    services.delete_conversation(user, conversation.pk)
    assert not Message.objects.exists()


def test_search_matches_titles_and_message_text_of_your_conversations(user, bob) -> None:
    by_title = services.create_conversation(user, "m", title="Paris trip")
    by_text = services.create_conversation(user, "m", title="Questions")
    Message.objects.create(conversation=by_text, role="assistant", content="The capital is PARIS.")
    Message.objects.create(conversation=by_text, role="user", content="and paris again")
    services.create_conversation(user, "m", title="Other")
    services.create_conversation(bob, "m", title="Bob in Paris")
    found = list(services.search_conversations(user, "paris"))
    assert sorted(c.pk for c in found) == sorted([by_title.pk, by_text.pk])
    assert len(services.search_conversations(user, "")) == 3


def test_conversations_list_newest_first(user) -> None:
    old = services.create_conversation(user, "m", title="Old")
    new = services.create_conversation(user, "m", title="New")
    assert list(services.search_conversations(user)) == [new, old]
    services.rename_conversation(user, old.pk, "Old, renamed")
    assert list(services.search_conversations(user)) == [old, new]


def test_the_model_sees_the_system_prompt_then_the_turns_so_far(user) -> None:
    conversation = services.create_conversation(user, "m", system_prompt="Be brief.")
    Message.objects.create(conversation=conversation, role="user", content="Hi")
    Message.objects.create(conversation=conversation, role="assistant", content="Hel", status="stopped")
    Message.objects.create(conversation=conversation, role="user", content="Again")
    Message.objects.create(conversation=conversation, role="assistant", content="", status="error")
    assert services.engine_messages(conversation, "New") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hel"},
        {"role": "user", "content": "Again"},
        {"role": "user", "content": "New"},
    ]


def test_the_send_form_lists_only_models_that_generate(user, store, tiny_model, tiny_bert_dir) -> None:
    store.import_folder(tiny_bert_dir, "tiny-bert", license="MIT")
    assert services.model_choices() == [("tiny-llama", "tiny-llama")]
    form = send_form({"model": "tiny-bert", "content": "hi"})
    assert not form.is_valid()
    assert "Unknown model tiny-bert" in form.errors["model"][0]
    assert send_form({"model": "tiny-llama", "content": "hi"}).is_valid()


def test_weights_hash_comes_from_the_store(tiny_model) -> None:
    assert services.weights_sha256("tiny-llama") == tiny_model.sha256 != ""


def test_one_engine_per_loaded_model(tiny_model) -> None:
    engine = services.engine_for("tiny-llama")
    assert services.engine_for("tiny-llama") is engine
    assert engine.loaded.name == "tiny-llama"
