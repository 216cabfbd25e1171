"""The prompt library: built-ins, "Use" filling the chat's composer, and each user's own templates
(create, edit, delete, few-shot example rows, limits, owner-only, CSRF)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from playground.chat import prompt_library
from playground.chat.models import PromptTemplate

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="another long passphrase")


@pytest.fixture
def mine(user) -> PromptTemplate:
    return PromptTemplate.objects.create(
        owner=user,
        name="Capitals",
        category="Task",
        system="Answer with one word.",
        template="{examples}\n\nInput: {country}\nOutput:",
        examples=[{"input": "France", "output": "Paris"}, {"input": "Japan", "output": "Tokyo"}],
    )


@pytest.fixture
def bobs(bob) -> PromptTemplate:
    return PromptTemplate.objects.create(owner=bob, name="Bob's secret", template="Bob {text}")


def composer(page: str) -> str:
    """The text in the chat's message box, as the browser would show it."""
    found = re.search(r'<textarea id="id_content"[^>]*>\n?(.*?)</textarea>', page, re.S)
    assert found, "no composer on the page"
    return html.unescape(found.group(1))


def system_box(page: str) -> str:
    found = re.search(r'<textarea name="system" id="id_system"[^>]*>(.*?)</textarea>', page, re.S)
    assert found
    return html.unescape(found.group(1))


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Sentiment",
        "category": "Task",
        "description": "Positive or negative",
        "system": "Reply with one word.",
        "template": "Label it.\n\n{examples}\n\nInput: {text}\nOutput:",
        "examples-TOTAL_FORMS": "3",
        "examples-INITIAL_FORMS": "0",
        "examples-MIN_NUM_FORMS": "0",
        "examples-MAX_NUM_FORMS": "20",
        "examples-0-input": "I loved it",
        "examples-0-output": "positive",
        "examples-1-input": "Dreadful",
        "examples-1-output": "negative",
        "examples-2-input": "",
        "examples-2-output": "",
    }
    data.update(overrides)
    return data


# --- the built-ins --------------------------------------------------------------------------------
def test_the_builtins_cover_the_techniques_and_tasks_of_the_notes() -> None:
    keys = {p.key for p in prompt_library.BUILTINS}
    assert keys == {
        "zero-shot", "few-shot", "chain-of-thought", "summarization", "translation",
        "question-answering", "classification", "nli", "extraction",
    }  # fmt: skip
    few_shot = prompt_library.builtin("builtin:few-shot")
    assert few_shot is not None
    assert 2 <= len(few_shot.examples) <= 3
    assert "Let's think step by step" in prompt_library.BY_KEY["chain-of-thought"].template
    nli = prompt_library.BY_KEY["nli"]
    assert {"premise", "hypothesis"} <= set(nli.placeholders)
    assert all(w in nli.system for w in ("entailment", "neutral", "contradiction"))
    assert prompt_library.BY_KEY["question-answering"].placeholders == ["context", "question"]
    assert "labels" in prompt_library.BY_KEY["classification"].placeholders
    # JSON braces in the extraction template are text, not placeholders.
    assert prompt_library.BY_KEY["extraction"].placeholders == ["fields", "text"]


def test_compose_puts_examples_in_their_slot_or_first_and_keeps_other_braces() -> None:
    shots = [{"input": "a", "output": "b"}, {"input": "c", "output": "d"}]
    assert prompt_library.compose_message("Go.\n{examples}\nInput: {x}", shots) == (
        "Go.\nInput: a\nOutput: b\n\nInput: c\nOutput: d\nInput: {x}"
    )
    assert (
        prompt_library.compose_message('Say {"k": 1} {x}', shots[:1])
        == 'Input: a\nOutput: b\n\nSay {"k": 1} {x}'
    )
    assert prompt_library.compose_message("Plain {x}") == "Plain {x}"


def test_the_library_lists_every_builtin_and_only_my_own(client_in: Client, mine, bobs) -> None:
    page = client_in.get(reverse("chat:library")).content.decode()
    for p in prompt_library.BUILTINS:
        assert f'id="builtin-{p.key}"' in page
        assert f'href="/chat/?prompt=builtin%3A{p.key}"' in page
    assert 'data-testid="own-prompt"' in page
    assert "Capitals" in page
    assert f'href="/chat/?prompt={mine.pk}"' in page
    assert "Bob&#x27;s secret" not in page
    assert "Bob's secret" not in page


@pytest.mark.parametrize("prompt", prompt_library.BUILTINS, ids=lambda p: p.key)
def test_using_a_builtin_fills_the_composer_and_system_prompt(client_in: Client, tiny_model, prompt) -> None:
    response = client_in.get(reverse("chat:index"), {"prompt": prompt.ref})
    assert response.status_code == 200
    page = response.content.decode()
    text = composer(page)
    assert text == prompt_library.compose_message(prompt.template, prompt.examples)
    assert len(text) <= settings.CHAT_MAX_PROMPT_CHARS
    assert system_box(page) == prompt.system
    assert f"From the prompt library: “{prompt.name}”" in page
    for name in prompt.placeholders:
        assert f"<code>{{{name}}}</code>" in page


def test_the_few_shot_builtin_writes_its_examples_before_the_new_input(client_in: Client, tiny_model) -> None:
    text = composer(client_in.get(reverse("chat:index"), {"prompt": "builtin:few-shot"}).content.decode())
    assert "Input: The soup was cold and the waiter ignored us.\nOutput: negative\n\n" in text
    assert text.index("Output: positive") < text.index("Input: {text}")
    assert text.endswith("Input: {text}\nOutput:")


def test_using_my_template_fills_it_in_and_others_are_not_found(
    client_in: Client, tiny_model, mine, bobs
) -> None:
    page = client_in.get(reverse("chat:index"), {"prompt": str(mine.pk)}).content.decode()
    assert (
        composer(page)
        == "Input: France\nOutput: Paris\n\nInput: Japan\nOutput: Tokyo\n\nInput: {country}\nOutput:"
    )
    assert system_box(page) == "Answer with one word."
    for ref in (str(bobs.pk), "builtin:nope", "../etc"):
        assert client_in.get(reverse("chat:index"), {"prompt": ref}).status_code == 404


def test_a_plain_chat_page_has_an_empty_composer(client_in: Client, tiny_model) -> None:
    page = client_in.get(reverse("chat:index")).content.decode()
    assert composer(page) == ""
    assert "From the prompt library" not in page


# --- my own templates -----------------------------------------------------------------------------
def test_i_create_a_template_with_examples_and_blank_rows_are_skipped(client_in: Client, user) -> None:
    response = client_in.post(reverse("chat:prompt-new"), form_data())
    saved = PromptTemplate.objects.get(owner=user, name="Sentiment")
    assert response.status_code == 302
    assert response["Location"] == f"/chat/prompts/#prompt-{saved.pk}"
    assert saved.examples == [
        {"input": "I loved it", "output": "positive"},
        {"input": "Dreadful", "output": "negative"},
    ]
    assert saved.system == "Reply with one word."
    assert "Saved the template “Sentiment”" in client_in.get(response["Location"]).content.decode()


def test_edit_a_copy_of_a_builtin_starts_from_its_content(client_in: Client) -> None:
    page = client_in.get(reverse("chat:prompt-new"), {"from": "builtin:few-shot"}).content.decode()
    assert 'value="Few-shot (my copy)"' in page
    assert "The soup was cold and the waiter ignored us." in page
    assert page.count('data-testid="example-row"') == 4  # three examples and a blank row


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"name": ""}, "Give the template a name."),
        ({"template": "   "}, "Write the template: the message the model receives."),
        ({"template": "x" * (settings.CHAT_MAX_PROMPT_CHARS + 1)}, "Ensure this value has at most"),
        ({"examples-0-output": ""}, "Give the example an output (or tick Remove)."),
        ({"examples-0-input": "y" * 1999, "examples-1-input": "z" * 1999, "template": "t" * 12_500},
         "a chat message holds at most"),
    ],
)  # fmt: skip
def test_bad_templates_are_refused_with_the_reason_in_the_form(
    client_in: Client, user, overrides, error
) -> None:
    response = client_in.post(reverse("chat:prompt-new"), form_data(**overrides))
    assert response.status_code == 200
    assert error in html.unescape(response.content.decode())
    assert not PromptTemplate.objects.filter(owner=user).exists()


def test_more_than_twenty_examples_are_refused(client_in: Client, user) -> None:
    data = form_data(**{"examples-TOTAL_FORMS": "21"})
    for i in range(21):
        data[f"examples-{i}-input"] = f"in {i}"
        data[f"examples-{i}-output"] = f"out {i}"
    page = client_in.post(reverse("chat:prompt-new"), data).content.decode()
    assert "At most 20 examples." in page
    assert not PromptTemplate.objects.filter(owner=user).exists()


def test_names_are_unique_per_user_but_not_across_users(client_in: Client, user, mine, bob) -> None:
    page = client_in.post(reverse("chat:prompt-new"), form_data(name="Capitals")).content.decode()
    assert "You already have a template named “Capitals”" in page
    assert PromptTemplate.objects.filter(owner=user).count() == 1
    bob_client = Client()
    bob_client.force_login(bob)
    assert bob_client.post(reverse("chat:prompt-new"), form_data(name="Capitals")).status_code == 302


def test_add_an_example_shows_one_more_row_and_saves_nothing(client_in: Client, user) -> None:
    data = form_data(**{"add_example": "1", "examples-2-input": "Fine", "examples-2-output": "positive"})
    page = client_in.post(reverse("chat:prompt-new"), data).content.decode()
    assert page.count('data-testid="example-row"') == 4
    assert "Fine" in page
    assert 'value="Sentiment"' in page
    assert "field-error" not in page.split('id="example-editor"')[0].split("<form")[1]
    assert not PromptTemplate.objects.exists()


def test_i_edit_my_template_and_remove_an_example(client_in: Client, mine) -> None:
    page = client_in.get(reverse("chat:prompt-edit", args=[mine.pk])).content.decode()
    assert "Paris" in page
    assert "Tokyo" in page
    data = form_data(
        name="Capitals",
        **{
            "examples-INITIAL_FORMS": "2",
            "examples-0-input": "France",
            "examples-0-output": "Paris",
            "examples-1-input": "Japan",
            "examples-1-output": "Tokyo",
            "examples-1-DELETE": "on",
        },
    )
    assert client_in.post(reverse("chat:prompt-edit", args=[mine.pk]), data).status_code == 302
    mine.refresh_from_db()
    assert mine.examples == [{"input": "France", "output": "Paris"}]
    assert mine.template.startswith("Label it.")


def test_i_delete_my_template(client_in: Client, mine) -> None:
    response = client_in.post(reverse("chat:prompt-delete", args=[mine.pk]))
    assert response.status_code == 302
    assert not PromptTemplate.objects.filter(pk=mine.pk).exists()
    assert client_in.get(reverse("chat:prompt-delete", args=[mine.pk])).status_code == 405


def test_another_users_template_is_not_found_and_untouched(client_in: Client, bobs) -> None:
    assert client_in.get(reverse("chat:prompt-edit", args=[bobs.pk])).status_code == 404
    assert client_in.post(reverse("chat:prompt-edit", args=[bobs.pk]), form_data()).status_code == 404
    assert client_in.post(reverse("chat:prompt-delete", args=[bobs.pk])).status_code == 404
    assert client_in.get(reverse("chat:prompt-new"), {"from": str(bobs.pk)}).status_code == 404
    bobs.refresh_from_db()
    assert bobs.name == "Bob's secret"


def test_the_forms_need_a_csrf_token(user) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("chat:prompt-new"), form_data()).status_code == 403
    page = client.get(reverse("chat:prompt-new")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post(reverse("chat:prompt-new"), form_data(csrfmiddlewaretoken=token)).status_code == 302
    assert PromptTemplate.objects.filter(owner=user, name="Sentiment").exists()


def test_template_text_is_shown_escaped(client_in: Client, user) -> None:
    PromptTemplate.objects.create(owner=user, name="<b>x</b>", template="<script>alert(1)</script> {text}")
    page = client_in.get(reverse("chat:library")).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_library_needs_a_login(client: Client) -> None:
    response = client.get(reverse("chat:library"))
    assert response.status_code == 302
    assert "/login" in response["Location"]
