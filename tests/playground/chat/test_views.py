"""The chat page: the sidebar, owner-only conversations, rename and delete, and how saved answers show."""

from __future__ import annotations

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


@pytest.fixture
def chat(user, tiny_model) -> Conversation:
    return services.create_conversation(user, "tiny-llama", title="Capitals")


def answer(conversation: Conversation, text: str, status: str = "complete", **stats) -> Message:
    question = Message.objects.create(conversation=conversation, role="user", content="Tell me")
    provenance = {"model": "tiny-llama", "seed": 1234, "prompt_tokens": 12}
    if stats:
        provenance["stats"] = stats
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=text,
        status=status,
        parent=question,
        provenance=provenance,
    )


def test_the_page_renders_for_its_owner_with_every_sampler_setting(client_in: Client, chat) -> None:
    html = client_in.get(reverse("chat:index")).content.decode()
    for name in ["temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed", "max_new_tokens"]:
        assert f'name="{name}"' in html
    assert 'name="stop_sequences"' in html
    assert '<option value="tiny-llama" data-context="256" selected>' in html
    for preset in ["Deterministic", "Balanced", "Creative"]:
        assert f">{preset}</button>" in html
    assert "at most 2048 new tokens per answer" in html
    assert 'src="/static/chat/chat.js"' in html
    assert 'aria-current="page">Chat</a>' in html


def test_every_setting_explains_itself_in_a_tooltip(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("chat:index")).content.decode()
    assert 'title="Keep only the k likeliest tokens (0 = off).">Top-k' in html
    assert "Empty = a fresh one each time." in html


def test_the_sidebar_lists_only_my_conversations_newest_first(
    client_in: Client, user, bob, tiny_model
) -> None:
    services.create_conversation(user, "tiny-llama", title="Older")
    services.create_conversation(user, "tiny-llama", title="Newer")
    services.create_conversation(bob, "tiny-llama", title="Bob's secret")
    html = client_in.get(reverse("chat:index")).content.decode()
    assert "secret" not in html
    assert html.index(">Newer</a>") < html.index(">Older</a>")


def test_search_filters_the_sidebar_as_an_htmx_partial(client_in: Client, user, tiny_model) -> None:
    services.create_conversation(user, "tiny-llama", title="Paris trip")
    services.create_conversation(user, "tiny-llama", title="Python help")
    response = client_in.get(reverse("chat:search"), {"q": "paris"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Paris trip" in html
    assert "Python help" not in html
    assert "<html" not in html  # just the list
    nothing = client_in.get(reverse("chat:search"), {"q": "zebra"}, **HTMX).content.decode()
    assert "No chat matches “zebra”." in nothing


def test_a_conversation_opens_for_its_owner_and_is_missing_for_others(user, bob, chat) -> None:
    answer(chat, "The capital is Paris.")
    owner, stranger = Client(), Client()
    owner.force_login(user)
    stranger.force_login(bob)
    html = owner.get(reverse("chat:conversation", args=[chat.pk])).content.decode()
    assert "The capital is Paris." in html
    assert f'data-conversation="{chat.pk}"' in html
    assert stranger.get(reverse("chat:conversation", args=[chat.pk])).status_code == 404
    message = chat.messages.last()
    assert stranger.get(reverse("chat:message", args=[message.pk])).status_code == 404
    assert owner.get(reverse("chat:message", args=[message.pk])).status_code == 200


def test_rename_works_for_the_owner_only(user, bob, chat) -> None:
    owner, stranger = Client(), Client()
    owner.force_login(user)
    stranger.force_login(bob)
    url = reverse("chat:rename", args=[chat.pk])
    assert stranger.post(url, {"title": "Hijacked"}, **HTMX).status_code == 404
    response = owner.post(url, {"title": "European capitals"}, **HTMX)
    assert response.status_code == 200
    assert "European capitals" in response.content.decode()
    chat.refresh_from_db()
    assert chat.title == "European capitals"


def test_a_blank_title_is_refused_with_a_message_in_place(client_in: Client, chat) -> None:
    response = client_in.post(reverse("chat:rename", args=[chat.pk]), {"title": "  "}, **HTMX)
    assert response.status_code == 200
    assert "Give the chat a title." in response.content.decode()
    chat.refresh_from_db()
    assert chat.title == "Capitals"


def test_delete_works_for_the_owner_only(user, bob, chat) -> None:
    other = services.create_conversation(user, "tiny-llama", title="Keep me")
    owner, stranger = Client(), Client()
    owner.force_login(user)
    stranger.force_login(bob)
    url = reverse("chat:delete", args=[chat.pk])
    assert stranger.post(url, **HTMX).status_code == 404
    assert Conversation.objects.filter(pk=chat.pk).exists()
    response = owner.post(url, **HTMX)
    assert response.status_code == 200
    assert "Keep me" in response.content.decode()
    assert not Conversation.objects.filter(pk=chat.pk).exists()
    assert Conversation.objects.filter(pk=other.pk).exists()


def test_deleting_the_open_conversation_goes_back_to_a_new_chat(client_in: Client, chat) -> None:
    here = f"http://testserver/chat/{chat.pk}/"
    response = client_in.post(reverse("chat:delete", args=[chat.pk]), HTTP_HX_CURRENT_URL=here, **HTMX)
    assert response.headers["HX-Redirect"] == "/chat/"


def test_the_delete_button_asks_first(client_in: Client, chat) -> None:
    html = client_in.get(reverse("chat:index")).content.decode()
    assert 'hx-confirm="Delete the chat “Capitals” and all its messages?"' in html


def test_rename_and_delete_need_the_csrf_token(user, chat) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("chat:rename", args=[chat.pk]), {"title": "x"}).status_code == 403
    assert client.post(reverse("chat:delete", args=[chat.pk])).status_code == 403
    assert Conversation.objects.get(pk=chat.pk).title == "Capitals"
    client.get(reverse("chat:index"))
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("chat:rename", args=[chat.pk]), {"title": "x"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 302


def test_rename_and_delete_refuse_get(client_in: Client, chat) -> None:
    assert client_in.get(reverse("chat:delete", args=[chat.pk])).status_code == 405
    assert Conversation.objects.filter(pk=chat.pk).exists()


def test_html_the_model_writes_shows_as_text(client_in: Client, chat) -> None:
    answer(
        chat,
        "Look: <script>alert(1)</script> and <img src=x onerror=alert(1)> and [x](javascript:alert(1))",
    )
    html = client_in.get(reverse("chat:conversation", args=[chat.pk])).content.decode()
    body = html.split('class="body markdown"')[1].split("</div>")[0]
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<img" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "javascript:" not in body.replace("[x](javascript:alert(1))", "")
    assert 'href="javascript' not in html


def test_a_user_message_is_escaped(client_in: Client, chat) -> None:
    Message.objects.create(conversation=chat, role="user", content="<b>bold?</b>")
    html = client_in.get(reverse("chat:conversation", args=[chat.pk])).content.decode()
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html


def test_markdown_code_blocks_render_as_pre_code(client_in: Client, chat) -> None:
    message = answer(chat, "Here:\n\n```python\nprint('<hi>')\n```\n\n**bold**")
    html = client_in.get(reverse("chat:message", args=[message.pk]), **HTMX).content.decode()
    assert "<pre><code class=\"language-python\">print('&lt;hi&gt;')" in html
    assert "<strong>bold</strong>" in html
    assert html.lstrip().startswith(f'<li class="msg assistant" id="message-{message.pk}"')


def test_an_answer_left_mid_stream_shows_with_its_stopped_badge(client_in: Client, chat) -> None:
    answer(chat, "Once upon a time, a robot", status="stopped", stop_reason="cancelled", generated_tokens=7)
    html = client_in.get(reverse("chat:conversation", args=[chat.pk])).content.decode()
    assert "Once upon a time, a robot" in html
    assert '<span class="badge stopped"' in html
    assert "stop: cancelled" in html


def test_a_failed_answer_shows_its_error(client_in: Client, chat) -> None:
    message = answer(chat, "", status="error", stop_reason="error")
    message.error = "The engine stopped."
    message.save()
    html = client_in.get(reverse("chat:conversation", args=[chat.pk])).content.decode()
    assert '<span class="badge error">error</span>' in html
    assert "The engine stopped." in html


def test_each_answer_shows_its_stats_from_provenance(client_in: Client, chat) -> None:
    answer(
        chat,
        "Paris.",
        stop_reason="stop",
        prompt_tokens=12,
        generated_tokens=3,
        time_to_first_token_s=0.1234,
        tokens_per_s=41.57,
    )
    html = client_in.get(reverse("chat:conversation", args=[chat.pk])).content.decode()
    stats = html.split('data-testid="stats"')[1].split("</p>")[0]
    for text in [
        "first token 0.12 s",
        "41.6 tokens/s",
        "12 in · 3 out",
        "stop: stop",
        "tiny-llama",
        "seed 1234",
    ]:
        assert text in stats
    assert 'data-used="15"' in html  # the context bar starts from the last answer


def test_a_missing_conversation_is_a_404_not_a_500(client_in: Client, tiny_model) -> None:
    assert client_in.get(reverse("chat:conversation", args=[999])).status_code == 404
    assert client_in.post(reverse("chat:rename", args=[999]), {"title": "x"}).status_code == 404
    assert client_in.get(reverse("chat:message", args=[999])).status_code == 404


def test_the_refreshed_sidebar_still_marks_the_open_conversation(client_in: Client, chat) -> None:
    here = f"http://testserver/chat/{chat.pk}/"
    html = client_in.get(reverse("chat:search"), HTTP_HX_CURRENT_URL=here, **HTMX).content.decode()
    assert f'<a href="/chat/{chat.pk}/" aria-current="page">Capitals</a>' in html


def test_a_conversation_exports_as_json_with_provenance(client_in: Client, chat) -> None:
    answer(chat, "Paris.", stop_reason="stop")
    answer(chat, "Half an ans", status="stopped", stop_reason="cancelled")
    response = client_in.get(reverse("chat:export", args=[chat.pk, "json"]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="capitals-{chat.pk}.json"'
    data = response.json()
    assert data["title"] == "Capitals"
    assert data["model"] == "tiny-llama"
    assert [(m["role"], m["content"], m["status"]) for m in data["messages"]] == [
        ("user", "Tell me", "complete"),
        ("assistant", "Paris.", "complete"),
        ("user", "Tell me", "complete"),
        ("assistant", "Half an ans", "stopped"),
    ]
    assert data["messages"][1]["provenance"]["seed"] == 1234
    assert data["messages"][1]["provenance"]["stats"]["stop_reason"] == "stop"


def test_a_conversation_exports_as_markdown(client_in: Client, chat) -> None:
    answer(chat, "Paris is the **capital**.", stop_reason="stop")
    answer(chat, "Half", status="stopped", stop_reason="cancelled")
    response = client_in.get(reverse("chat:export", args=[chat.pk, "md"]))
    assert response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert text.startswith("# Capitals\n")
    assert "## You\n\nTell me\n" in text
    assert "## Assistant\n\nParis is the **capital**.\n" in text
    assert "## Assistant (stopped)\n\nHalf\n" in text
    assert "*tiny-llama, seed 1234, stop: stop*" in text


def test_export_is_for_the_owner_only_and_knows_two_formats(user, bob, chat) -> None:
    other = Client()
    other.force_login(bob)
    assert other.get(reverse("chat:export", args=[chat.pk, "json"])).status_code == 404
    owner = Client()
    owner.force_login(user)
    assert owner.get(f"/chat/{chat.pk}/export.exe").status_code == 404
    assert (
        f'href="/chat/{chat.pk}/export.md"'
        in owner.get(reverse("chat:conversation", args=[chat.pk])).content.decode()
    )
