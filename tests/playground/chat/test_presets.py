"""Sampler presets users save from the chat panel: saved through htmx with SendForm's rules, shown next
to the built-ins in the same data-values format, deleted, owner-only."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from playground.chat.models import SamplerPreset

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def panel(**overrides: Any) -> dict[str, Any]:
    """What the chat's settings form posts (the whole form: htmx includes the enclosing form)."""
    data = {
        "model": "tiny-llama",
        "system": "Be brief.",
        "preset_name": "Sharp",
        "temperature": "0.3",
        "top_k": "40",
        "top_p": "0.8",
        "min_p": "0.05",
        "repetition_penalty": "1.2",
        "seed": "",
        "max_new_tokens": "64",
        "stop_sequences": "END\r\n\r\n###",
        "best_of": "3",
        "num_beams": "1",
        "speculative": "off",
        "draft_model": "",
        "speculative_tokens": "4",
    }
    data.update(overrides)
    return data


def buttons(page: str) -> dict[str, dict[str, Any]]:
    """Preset buttons of a page or partial: label -> the values chat.js copies into the form."""
    found = re.findall(
        r'<button type="button" class="preset secondary" data-values="([^"]*)"[^>]*>([^<]*)</button>', page
    )
    return {html.unescape(label): json.loads(html.unescape(values)) for values, label in found}


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="another long passphrase")


def test_saving_stores_the_settings_and_shows_a_button_like_the_builtins(
    client_in: Client, user, tiny_model
) -> None:
    response = client_in.post(reverse("chat:preset-save"), panel(), **HTMX)
    assert response.status_code == 200
    saved = SamplerPreset.objects.get(owner=user, name="Sharp")
    assert saved.values == {
        "temperature": 0.3, "top_k": 40, "top_p": 0.8, "min_p": 0.05, "repetition_penalty": 1.2, "seed": None,
        "max_new_tokens": 64, "stop_sequences": ["END", "###"], "best_of": 3, "num_beams": 1,
        "speculative": "off", "draft_model": "", "speculative_tokens": 4,
    }  # fmt: skip
    partial = response.content.decode()
    assert "<html" not in partial
    assert "Saved the preset “Sharp”" in partial
    assert buttons(partial)["Sharp"] == {**saved.values, "seed": "", "stop_sequences": "END\n###"}
    # The chat page shows it next to the built-ins, every key a field of the settings form.
    page = client_in.get(reverse("chat:index")).content.decode()
    shown = buttons(page)
    assert {"Deterministic", "Balanced", "Creative", "Sharp"} <= set(shown)
    for name in shown["Sharp"]:
        assert f'name="{name}"' in page


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"preset_name": "  "}, "Name the preset."),
        ({"temperature": "9"}, "Temperature: Ensure this value is less than or equal to 5."),
        ({"top_p": "abc"}, "Top-p: Enter a number."),
        ({"max_new_tokens": "0"}, "Max new tokens: Ensure this value is greater than or equal to 1."),
        ({"best_of": "9"}, "Best of N: Ensure this value is less than or equal to 8."),
        ({"best_of": "2", "num_beams": "2"}, "Choose best-of-N or beam search, not both"),
        ({"stop_sequences": "\n".join("abcde")}, "At most 4 stop sequences."),
    ],
)
def test_bad_presets_are_refused_in_place(client_in: Client, user, tiny_model, overrides, error) -> None:
    response = client_in.post(reverse("chat:preset-save"), panel(**overrides), **HTMX)
    assert response.status_code == 200  # htmx swaps the partial with its errors in
    partial = html.unescape(response.content.decode())
    assert 'role="alert"' in partial
    assert error in partial
    assert not SamplerPreset.objects.filter(owner=user).exists()


def test_names_are_unique_per_user(client_in: Client, user, bob, tiny_model) -> None:
    SamplerPreset.objects.create(owner=user, name="Sharp", values={"temperature": 0})
    SamplerPreset.objects.create(owner=bob, name="Mine too", values={"temperature": 0})
    partial = html.unescape(client_in.post(reverse("chat:preset-save"), panel(), **HTMX).content.decode())
    assert "You already have a preset named “Sharp”" in partial
    assert 'value="Sharp"' in partial  # the name typed stays in the box to be changed
    assert SamplerPreset.objects.filter(owner=user).count() == 1
    response = client_in.post(reverse("chat:preset-save"), panel(preset_name="Mine too"), **HTMX)
    assert "Saved the preset" in response.content.decode()


def test_i_see_and_delete_only_my_presets(client_in: Client, user, bob, tiny_model) -> None:
    mine = SamplerPreset.objects.create(owner=user, name="Cold", values={"temperature": 0})
    theirs = SamplerPreset.objects.create(owner=bob, name="Bobs", values={"temperature": 2})
    page = client_in.get(reverse("chat:index")).content.decode()
    assert "Cold" in buttons(page)
    assert "Bobs" not in buttons(page)
    assert client_in.post(reverse("chat:preset-delete", args=[theirs.pk]), **HTMX).status_code == 404
    assert SamplerPreset.objects.filter(pk=theirs.pk).exists()
    partial = client_in.post(reverse("chat:preset-delete", args=[mine.pk]), **HTMX).content.decode()
    assert "Cold" not in buttons(partial)
    assert not SamplerPreset.objects.filter(pk=mine.pk).exists()


def test_saving_needs_a_csrf_token_and_a_post(user, tiny_model) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("chat:preset-save"), panel(), **HTMX).status_code == 403
    assert client.get(reverse("chat:preset-save")).status_code == 405
    assert not SamplerPreset.objects.exists()
    page = client.get(reverse("chat:index")).content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    response = client.post(reverse("chat:preset-save"), panel(), HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200
    assert SamplerPreset.objects.filter(owner=user, name="Sharp").exists()


def test_without_htmx_saving_returns_to_the_chat(client_in: Client, user, tiny_model) -> None:
    response = client_in.post(reverse("chat:preset-save"), panel())
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:index")
    assert SamplerPreset.objects.filter(owner=user, name="Sharp").exists()
