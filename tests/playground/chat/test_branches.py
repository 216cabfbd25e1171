"""Conversations as trees: the branch shown, versions of a turn, switching, deleting and exporting."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from playground.chat import services
from playground.chat.models import Conversation, Message

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="another long passphrase")


def say(conversation: Conversation, role: str, text: str, parent: Message | None, **fields) -> Message:
    return Message.objects.create(conversation=conversation, role=role, content=text, parent=parent, **fields)


@pytest.fixture
def tree(user):
    """Q1 -> A1 | A1b (regenerated) ; A1 -> Q2 -> A2 ; A1b -> Q2b -> A2b | A2c."""
    chat = services.create_conversation(user, "tiny-llama", title="Tree")
    q1 = say(chat, "user", "Q1", None)
    a1 = say(chat, "assistant", "A1", q1, provenance={"seed": 11})
    q2 = say(chat, "user", "Q2", a1)
    say(chat, "assistant", "A2", q2)
    a1b = say(chat, "assistant", "A1b", q1, provenance={"action": "regenerate", "source": a1.pk, "seed": 12})
    q2b = say(chat, "user", "Q2b", a1b)
    a2b = say(chat, "assistant", "A2b", q2b)
    say(chat, "assistant", "A2c", q2b, status="stopped")
    chat.current = a2b
    chat.save()
    return chat, {m.content: m for m in chat.messages.all()}


def shown(conversation: Conversation) -> list[str]:
    conversation.refresh_from_db()
    return [m.content for m in services.history(conversation)]


def test_history_is_the_branch_that_ends_at_the_current_message(tree) -> None:
    chat, m = tree
    assert shown(chat) == ["Q1", "A1b", "Q2b", "A2b"]
    chat.current = m["A2"]
    chat.save()
    assert shown(chat) == ["Q1", "A1", "Q2", "A2"]


def test_without_a_current_message_the_newest_message_ends_the_branch(tree) -> None:
    chat, _ = tree
    Conversation.objects.filter(pk=chat.pk).update(current=None)
    assert shown(chat) == ["Q1", "A1b", "Q2b", "A2c"]


def test_each_message_knows_its_versions(tree) -> None:
    chat, m = tree
    versions = {msg.content: msg.versions for msg in services.history(chat)}
    assert versions["Q1"] == services.Versions(index=1, count=1, previous=None, next=None)
    # A1 goes on for 2 messages (Q2, A2) that the branch shown does not have
    assert versions["A1b"] == services.Versions(
        index=2, count=2, previous=m["A1"].pk, next=None, later_elsewhere=((1, 2),)
    )
    assert versions["A2b"] == services.Versions(index=1, count=2, previous=None, next=m["A2c"].pk)


def test_the_model_sees_only_the_branch_shown(tree) -> None:
    chat, _ = tree
    turns = [(t["role"], t["content"]) for t in services.engine_messages(chat, "Next")]
    assert turns == [
        ("user", "Q1"),
        ("assistant", "A1b"),
        ("user", "Q2b"),
        ("assistant", "A2b"),
        ("user", "Next"),
    ]


def test_switching_shows_the_newest_answer_below_the_chosen_version(client_in: Client, tree) -> None:
    chat, m = tree
    response = client_in.post(reverse("chat:message-show", args=[m["A1"].pk]), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        '<div class="body plain">Q1</div>',
        "<p>A1</p>",
        '<div class="body plain">Q2</div>',
        "<p>A2</p>",
    ):
        assert text in html
    assert "A1b" not in html
    assert "1/2" in html  # A1 is the first of two versions
    assert shown(chat) == ["Q1", "A1", "Q2", "A2"]
    # Back to the other version: its newest leaf is the stopped A2c.
    client_in.post(reverse("chat:message-show", args=[m["A1b"].pk]), **HTMX)
    assert shown(chat) == ["Q1", "A1b", "Q2b", "A2c"]


def test_switching_without_javascript_goes_back_to_the_conversation(client_in: Client, tree) -> None:
    chat, m = tree
    response = client_in.post(reverse("chat:message-show", args=[m["A1"].pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:conversation", args=[chat.pk])


def test_the_page_shows_a_version_switcher_and_the_actions_of_each_message(client_in: Client, tree) -> None:
    chat, m = tree
    html = client_in.get(reverse("chat:conversation", args=[chat.pk])).content.decode()
    assert html.count('data-testid="versions"') == 2  # A1b (2/2) and A2b (1/2)
    assert f'hx-post="/chat/message/{m["A1"].pk}/show/"' in html
    assert f'hx-post="/chat/message/{m["A2c"].pk}/show/"' in html
    assert html.count('data-action="regenerate"') == 2
    assert html.count('data-action="edit"') == 2
    assert html.count('data-action="copy"') == 4
    assert html.count('hx-confirm="Delete this message and everything after it') == 4
    assert 'data-action="continue"' not in html  # no answer shown was stopped or cut by length
    # where a new version left later turns on the old one, the page says how to get back to them
    notes = re.findall(r'data-testid="version-note">([^<]*)<', html)
    assert notes == ["version 1 goes on for 2 more messages: switch with ‹ › to get back to it"]


def test_continue_shows_for_stopped_or_length_cut_answers_and_replay_shows_its_seed(
    client_in: Client, user
) -> None:
    chat = services.create_conversation(user, "tiny-llama")
    q = say(chat, "user", "Q", None)
    cut = {"seed": 99, "stats": {"stop_reason": "length"}}
    answer = say(chat, "assistant", "Cut <b>short</b>", q, provenance=cut, prompt_ids=[1, 2, 3])
    html = client_in.get(reverse("chat:message", args=[answer.pk])).content.decode()
    assert 'data-action="continue"' in html
    assert "Replay (seed 99)" in html
    assert 'data-content="Cut &lt;b&gt;short&lt;/b&gt;"' in html  # Copy and Edit read the raw text, escaped
    Message.objects.filter(pk=answer.pk).update(provenance={"seed": 99, "stats": {"stop_reason": "stop"}})
    assert (
        'data-action="continue"'
        not in client_in.get(reverse("chat:message", args=[answer.pk])).content.decode()
    )


def test_switching_and_deleting_need_the_csrf_token(user, tree) -> None:
    chat, m = tree
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("chat:message-show", args=[m["A1"].pk]), **HTMX).status_code == 403
    assert client.post(reverse("chat:message-delete", args=[m["A1"].pk]), **HTMX).status_code == 403
    assert client.get(reverse("chat:message-delete", args=[m["A1"].pk])).status_code == 405
    assert shown(chat) == ["Q1", "A1b", "Q2b", "A2b"]
    assert Message.objects.filter(pk=m["A1"].pk).exists()


def test_another_users_messages_are_out_of_reach(bob, tree) -> None:
    chat, m = tree
    client = Client()
    client.force_login(bob)
    assert client.post(reverse("chat:message-show", args=[m["A1"].pk]), **HTMX).status_code == 404
    assert client.post(reverse("chat:message-delete", args=[m["A1"].pk]), **HTMX).status_code == 404
    assert client.get(reverse("chat:messages", args=[chat.pk]), **HTMX).status_code == 404
    assert shown(chat) == ["Q1", "A1b", "Q2b", "A2b"]
    assert chat.messages.count() == 8


def test_deleting_a_version_removes_what_follows_it_and_shows_its_sibling(client_in: Client, tree) -> None:
    chat, m = tree
    response = client_in.post(reverse("chat:message-delete", args=[m["A1b"].pk]), **HTMX)
    assert response.status_code == 200
    assert "A2b" not in response.content.decode()
    assert shown(chat) == ["Q1", "A1", "Q2", "A2"]
    assert sorted(chat.messages.values_list("content", flat=True)) == ["A1", "A2", "Q1", "Q2"]


def test_deleting_the_only_answer_shows_the_question_it_answered(client_in: Client, tree) -> None:
    chat, m = tree
    client_in.post(reverse("chat:message-delete", args=[m["A1b"].pk]), **HTMX)
    client_in.post(reverse("chat:message-delete", args=[m["A2"].pk]), **HTMX)
    assert shown(chat) == ["Q1", "A1", "Q2"]
    client_in.post(reverse("chat:message-delete", args=[m["Q1"].pk]), **HTMX)
    assert shown(chat) == []
    assert not chat.messages.exists()


def test_deleting_in_an_unlinked_conversation_removes_the_messages_after_it(user) -> None:
    chat = services.create_conversation(user, "tiny-llama")
    for role, text in [("user", "Hi"), ("assistant", "Hello"), ("user", "Again"), ("assistant", "Sure")]:
        say(chat, role, text, None)  # saved before messages were linked: one branch in saved order
    assert shown(chat) == ["Hi", "Hello", "Again", "Sure"]
    services.delete_message(user, chat.messages.get(content="Again").pk)
    assert shown(chat) == ["Hi", "Hello"]
    assert chat.messages.count() == 2


def test_the_json_export_is_the_branch_shown_with_ids_and_parents(client_in: Client, tree) -> None:
    chat, m = tree
    data = client_in.get(reverse("chat:export", args=[chat.pk, "json"])).json()
    rows = [(x["content"], x["id"], x["parent"], x["versions"]) for x in data["messages"]]
    assert rows == [
        ("Q1", m["Q1"].pk, None, 1),
        ("A1b", m["A1b"].pk, m["Q1"].pk, 2),
        ("Q2b", m["Q2b"].pk, m["A1b"].pk, 1),
        ("A2b", m["A2b"].pk, m["Q2b"].pk, 2),
    ]
    markdown = client_in.get(reverse("chat:export", args=[chat.pk, "md"])).content.decode()
    assert "A2b" in markdown
    assert "A2c" not in markdown
    assert "A1\n" not in markdown
