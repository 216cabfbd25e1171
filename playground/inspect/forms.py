"""Form fields shared by the inspect tools."""

from __future__ import annotations

from django import forms

from playground.inspect.services.common import model_choices


class ModelNameField(forms.ChoiceField):
    """A catalog model, chosen by name; the choices are read when the form is made (the store can change)."""

    def __init__(self, *, causal_only: bool = False, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(choices=lambda: model_choices(causal_only), **kwargs)
        self.error_messages["invalid_choice"] = "Unknown model %(value)s: pick one from the catalog."
