"""Forms of the next-token explorer and the logit lens: every field bounded, every error in words."""

from __future__ import annotations

from itertools import permutations
from typing import Any

from django import forms
from django.conf import settings

from playground.core.forms import sampler_form
from playground.core.forms_structured import clean_output_format, output_format_form
from playground.core.services import STAGES
from playground.core.text import TextField
from playground.inspect.forms import ModelNameField, UserModelsForm

STAGE_LABELS = {"temperature": "temperature", "top_k": "top-k", "top_p": "top-p", "min_p": "min-p"}
# The orders people meet in practice first (transformers' warpers; llama.cpp's sampler chain), then the rest.
COMMON_ORDERS = [("temperature", "top_k", "top_p", "min_p"), ("top_k", "top_p", "min_p", "temperature")]
ORDER_CHOICES = [
    (",".join(order), " → ".join(STAGE_LABELS[s] for s in order))
    for order in COMMON_ORDERS + [p for p in permutations(STAGES) if p not in COMMON_ORDERS]
]
LENS_MAX_TOKENS = 48  # the grid shows every layer for every position; more columns stop being readable


class PromptForm(UserModelsForm):
    model = ModelNameField(causal_only=True, widget=forms.Select(attrs={"class": "live"}))
    text = TextField(
        what="The prompt",
        max_length=settings.INSPECT_MAX_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),  # a new prompt runs on submit, not on every keystroke
        error_messages={"required": "Type a prompt first."},
    )
    as_chat = forms.BooleanField(
        required=False, label="as chat", widget=forms.CheckboxInput(attrs={"class": "live"})
    )

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        if not text.strip():
            raise forms.ValidationError("Type a prompt first.")
        return text


class NextTokenForm(PromptForm, sampler_form(initial=True), output_format_form()):  # type: ignore[misc]
    """The prompt, the sampler's fields and, for structured output, a response format, its schema and
    the answer so far: the grammar stage shows which tokens the grammar allows after it."""

    order = forms.ChoiceField(
        choices=ORDER_CHOICES, initial=ORDER_CHOICES[0][0], widget=forms.Select(attrs={"class": "live"})
    )
    top_n = forms.IntegerField(
        min_value=1, max_value=100, initial=20, widget=forms.NumberInput(attrs={"class": "live"})
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    answer = TextField(
        what="The answer so far",
        max_length=settings.INSPECT_MAX_CHARS,
        strip=False,
        required=False,
        label="Answer so far",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"name": "'}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["response_format"].widget.attrs["class"] = "live"  # a new choice shows at once

    def clean_order(self) -> tuple[str, ...]:
        return tuple(self.cleaned_data["order"].split(","))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        cleaned["constraint"] = clean_output_format(self)  # llmcore.grammar.Constraint or None
        return cleaned


def with_defaults(data: dict) -> dict:
    """Form data with every missing field set to its initial value (the page's first load, API callers)."""
    filled = {
        name: field.initial for name, field in NextTokenForm.base_fields.items() if field.initial is not None
    }
    filled.update({k: v for k, v in data.items() if v not in (None, "")})
    return filled
