"""A form field for a catalog model whose weights must be here: a remote model, which the field never
offers, is refused with the reason rather than as an unknown name (the model exists, it can chat)."""

from __future__ import annotations

from typing import Any

from django import forms

from playground.catalog.models import ModelEntry
from playground.catalog.services import NeedsWeights, check_local


def remote_refusal(name: Any, what: str) -> str | None:
    """Why `what` cannot use model `name` when it is a shared remote model; None otherwise (then the
    usual unknown-model words apply, so a private model's name is never confirmed)."""
    if not isinstance(name, str) or not name:
        return None
    entry = ModelEntry.objects.filter(name=name, shared=True).first()
    try:
        if entry is not None:
            check_local(entry, what)
    except NeedsWeights as exc:
        return str(exc)
    return None


class LocalModelField(forms.ChoiceField):
    """A ChoiceField of local model names (set its choices as usual) that names a remote model as one."""

    def __init__(self, *args: Any, what: str = "this tool", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.what = what

    def validate(self, value: Any) -> None:
        try:
            super().validate(value)
        except forms.ValidationError:
            refusal = remote_refusal(value, self.what)
            if refusal:
                raise forms.ValidationError(refusal, code="remote") from None
            raise
