"""Form fields shared by the inspect tools."""

from __future__ import annotations

from typing import Any

from django import forms

from playground.catalog.fields import LocalModelField
from playground.inspect.services.common import model_choices


class ModelNameField(LocalModelField):
    """A catalog model, chosen by name; the choices are read when the form is made (the store can change).

    Only the models the form's user may see are choices (see UserModelsForm): another user's private
    model is refused with the same words as a model that does not exist.
    """

    def __init__(self, *, causal_only: bool = False, **kwargs) -> None:
        self.causal_only = causal_only
        kwargs.setdefault("what", "the inspect tools")
        super().__init__(choices=lambda: model_choices(None, causal_only), **kwargs)
        self.error_messages["invalid_choice"] = "Unknown model %(value)s: pick one from the catalog."


class UserModelsForm(forms.Form):
    """A form whose ModelNameFields offer the models `user` may use (none given: the shared ones)."""

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        for field in self.fields.values():
            if isinstance(field, ModelNameField):
                field.choices = lambda only=field.causal_only: model_choices(user, only)
