"""Form fields shared by the apps: the sampler's, built from the sampler settings the core services
describe (label, bounds, explanation), so a bound is written once."""

from __future__ import annotations

from django import forms

from playground.core.services import sampler_rows
from playground.core.text import FloatField


def sampler_fields(initial: bool) -> dict[str, forms.Field]:
    """A bounded form field per sampler setting; `initial`: with the setting's default as initial."""
    return {
        row["name"]: (forms.IntegerField if row["integer"] else FloatField)(
            label=row["label"],
            min_value=row["min"],
            max_value=row["max"],
            help_text=row["hint"],
            initial=row["default"] if initial else None,
        )
        for row in sampler_rows()
    }


def sampler_form(initial: bool = False) -> type[forms.Form]:
    """A form class with the sampler's fields, to inherit from."""
    return type("SamplerForm", (forms.Form,), sampler_fields(initial))
