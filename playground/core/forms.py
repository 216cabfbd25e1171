"""Form fields built from what an llmcore config says of its own fields (label, bounds, choices,
explanation; see core.services.setting_rows), so a bound is written once: the sampler's, shared by the
apps, and any other config's (the fine-tune form); and the generation fields the chat and the OpenAI API
share (stop sequences, the bound on candidates)."""

from __future__ import annotations

from typing import Any

from django import forms

from playground.core.services import sampler_rows
from playground.core.text import FloatField, check_text


def setting_field(row: dict[str, Any], initial: bool, required: bool = False) -> forms.Field:
    """The form field of one setting row: a choice, or a bounded whole or real number. `initial`: with
    the setting's default as initial value."""
    value = row["default"] if initial else None
    if row["choices"]:
        return forms.ChoiceField(
            label=row["label"],
            help_text=row["hint"],
            choices=row["choices"],
            initial=value,
            required=required,
        )
    kind = forms.IntegerField if row["integer"] else FloatField
    return kind(
        label=row["label"],
        min_value=row["min"],
        max_value=row["max"],
        help_text=row["hint"],
        initial=value,
        required=required,
    )


def sampler_fields(initial: bool, required: bool = True) -> dict[str, forms.Field]:
    """A bounded form field per sampler setting; `initial`: with the setting's default as initial;
    not `required`: a field left out is None (the API's, whose omitted fields keep the defaults)."""
    return {row["name"]: setting_field(row, initial, required=required) for row in sampler_rows()}


def sampler_form(initial: bool = False, required: bool = True) -> type[forms.Form]:
    """A form class with the sampler's fields, to inherit from."""
    return type("SamplerForm", (forms.Form,), sampler_fields(initial, required))


MAX_STOP_SEQUENCES = 4
MAX_STOP_SEQUENCE_CHARS = 32
MAX_CANDIDATES = 8  # best-of-N candidates or beams: each costs a whole generation (or a beam) of compute


class StopSequencesField(forms.Field):
    """A list of short, non-empty strings (a JSON list in a chat frame or an API body; one string is a
    list of one)."""

    def to_python(self, value: Any) -> list[str]:
        if value in (None, ""):
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
            raise forms.ValidationError("Stop sequences must be a list of strings.")
        if len(value) > MAX_STOP_SEQUENCES:
            raise forms.ValidationError(f"At most {MAX_STOP_SEQUENCES} stop sequences.")
        if any(not s or len(s) > MAX_STOP_SEQUENCE_CHARS for s in value):
            raise forms.ValidationError(
                f"Each stop sequence needs 1 to {MAX_STOP_SEQUENCE_CHARS} characters."
            )
        return [check_text(s, "A stop sequence") for s in value]
