"""The one check every text entry point of the site uses: forms, the JSON endpoints and the chat socket.

A JSON body or a socket frame can carry what no browser form can: a number or a list where text belongs,
or a lone surrogate ("\\ud800") that no tokenizer can encode. TextField refuses both with a sentence
beside the field, where a plain CharField would turn a list into "['a']" and let the surrogate through to
a 500. What counts as text is decided in llmcore.text (reached through core's services), which the dataset
parser shares.

FloatField is Django's, except that a JSON integer too large for a float (10**400) is "Enter a number."
instead of an OverflowError: every number field of a JSON endpoint or a socket frame uses it.
"""

from __future__ import annotations

from typing import Any

from django import forms

from playground.core.services import JsonTooDeep, json_type, loads_json, text_problem

__all__ = ["FloatField", "JsonTooDeep", "TextField", "TextValidator", "check_text", "loads_json"]


def check_text(text: str, what: str = "The text") -> str:
    """`text` itself, or a ValidationError saying where it is not valid Unicode text (or holds a NUL)."""
    problem = text_problem(text, what)
    if problem:
        raise forms.ValidationError(problem, code="invalid_text")
    return text


class TextValidator:
    """check_text as a field validator, for fields a ModelForm makes (the prompt library's)."""

    def __init__(self, what: str = "The text") -> None:
        self.what = what

    def __call__(self, value: Any) -> None:
        if isinstance(value, str):
            check_text(value, self.what)

    def __eq__(self, other: object) -> bool:  # validators are compared when migrations are made
        return isinstance(other, TextValidator) and other.what == self.what


class TextField(forms.CharField):
    """A CharField that takes only a string of valid text; `what` names it in the error ("The message").

    Over its max_length it is refused with the limit and the length, never cut: its widget gets no
    maxlength attribute, which makes a browser drop the rest of a paste without a word."""

    def __init__(self, *, what: str = "The text", **kwargs: Any) -> None:
        self.what = what
        super().__init__(**kwargs)
        if self.max_length is not None:
            self.error_messages["max_length"] = (
                f"{what} is longer than {self.max_length:,} characters (it has %(show_value)d): shorten it."
            )

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        attrs.pop("maxlength", None)
        return attrs

    def to_python(self, value: Any) -> str:
        if value not in self.empty_values and not isinstance(value, str):
            raise forms.ValidationError(
                f"{self.what} must be a string, not {json_type(value)}.", code="invalid"
            )
        return check_text(super().to_python(value) or "", self.what)


class FloatField(forms.FloatField):
    def to_python(self, value: Any) -> float | None:  # type: ignore[override]  # the stubs' int | None
        try:
            return super().to_python(value)
        except OverflowError:  # float(10**400): Django catches only ValueError and TypeError
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
