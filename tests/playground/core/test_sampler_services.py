"""The sampler's bounds and explanations are written once (llmcore.sampling's field metadata); the chat's
form and panel and the next-token explorer's form and sliders are built from them."""

from __future__ import annotations

import re

from django.urls import reverse

from llmcore.sampling import SamplingConfig, settings
from playground.chat.forms import SendForm
from playground.chat.views.conversations import PARAMETERS
from playground.inspect.forms_sampling import NextTokenForm


def test_every_bounded_setting_of_the_config_is_described() -> None:
    assert list(settings()) == ["temperature", "top_k", "top_p", "min_p", "repetition_penalty"]
    for name, (setting, default) in settings().items():
        assert getattr(SamplingConfig(), name) == default
        assert setting.minimum <= default <= setting.maximum
        assert setting.help
        assert setting.label


def test_both_forms_and_the_chat_panel_take_the_same_bounds() -> None:
    rows = {p["name"]: p for p in PARAMETERS}
    for name, (setting, default) in settings().items():
        for form in (SendForm, NextTokenForm):
            field = form.base_fields[name]
            assert (field.min_value, field.max_value) == (setting.minimum, setting.maximum), (form, name)
            assert field.label == setting.label
        assert NextTokenForm.base_fields[name].initial == default
        row = rows[name]
        assert (row["min"], row["max"], row["step"], row["hint"]) == (
            setting.minimum,
            setting.maximum,
            setting.step,
            setting.help,
        )


def test_the_explorer_draws_its_sliders_with_those_bounds(client_in, tiny_model) -> None:
    page = client_in.get(reverse("inspect:next-token")).content.decode()
    temperature, _ = settings()["temperature"]
    slider = re.search(r'<input type="range"[^>]*name="temperature"[^>]*>', page)
    assert slider is not None
    assert f'min="{temperature.minimum}" max="{temperature.maximum}" step="{temperature.step}"' in slider[0]
    assert temperature.help in page
