"""The sampler's settings as the pages show them, built from llmcore.sampling's own description of them
(label, bounds, step, explanation): the chat's form and panel and the next-token explorer's form and
sliders all come from here, so a bound is written once."""

from __future__ import annotations

from typing import Any

from django import forms

from llmcore.sampling import STAGES, SamplingConfig, settings
from playground.core.text import FloatField

__all__ = ["STAGES", "SamplingConfig", "sampler_form", "sampler_rows"]


def sampler_fields(initial: bool) -> dict[str, forms.Field]:
    """A bounded form field per sampler setting; `initial`: with the setting's default as initial."""
    fields: dict[str, forms.Field] = {}
    for name, (setting, default) in settings().items():
        kind = forms.IntegerField if type(default) is int else FloatField
        fields[name] = kind(
            label=setting.label,
            min_value=setting.minimum,
            max_value=setting.maximum,
            help_text=setting.help,
            initial=default if initial else None,
        )
    return fields


def sampler_form(initial: bool = False) -> type[forms.Form]:
    """A form class with the sampler's fields, to inherit from."""
    return type("SamplerForm", (forms.Form,), sampler_fields(initial))


def sampler_rows() -> list[dict[str, Any]]:
    """name, label, min, max, step and hint of each sampler setting: a panel's or a slider's row."""
    return [
        {"name": name, "label": s.label, "min": s.minimum, "max": s.maximum, "step": s.step, "hint": s.help}
        for name, (s, _) in settings().items()
    ]
