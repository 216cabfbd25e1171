"""Form fields built from what an llmcore config says of its own fields (label, bounds, choices,
explanation; see core.services.setting_rows), so a bound is written once: the sampler's, shared by the
apps, and any other config's (the fine-tune form)."""

from __future__ import annotations

from typing import Any

from django import forms

from playground.core.services import sampler_rows
from playground.core.text import FloatField


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


def sampler_fields(initial: bool) -> dict[str, forms.Field]:
    """A bounded form field per sampler setting; `initial`: with the setting's default as initial."""
    return {row["name"]: setting_field(row, initial, required=True) for row in sampler_rows()}


def sampler_form(initial: bool = False) -> type[forms.Form]:
    """A form class with the sampler's fields, to inherit from."""
    return type("SamplerForm", (forms.Form,), sampler_fields(initial))
