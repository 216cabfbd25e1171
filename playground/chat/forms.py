"""The chat's one form: what a "send" frame may carry. Every field is bounded and every error is in words."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from playground.chat import services

MAX_STOP_SEQUENCES = 4
MAX_STOP_SEQUENCE_CHARS = 32


class StopSequencesField(forms.Field):
    """A list of short, non-empty strings (a JSON list in the frame)."""

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
        return list(value)


class SendForm(forms.Form):
    conversation = forms.IntegerField(min_value=1, required=False)
    model = forms.ChoiceField(choices=services.model_choices)
    content = forms.CharField(
        max_length=settings.CHAT_MAX_PROMPT_CHARS, strip=False, error_messages={"required": "Type a message."}
    )
    system = forms.CharField(max_length=settings.CHAT_MAX_SYSTEM_CHARS, strip=False, required=False)
    temperature = forms.FloatField(min_value=0, max_value=5)
    top_k = forms.IntegerField(min_value=0, max_value=1000)
    top_p = forms.FloatField(min_value=0.01, max_value=1)
    min_p = forms.FloatField(min_value=0, max_value=0.99)
    repetition_penalty = forms.FloatField(min_value=0.5, max_value=3)
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=settings.CHAT_MAX_NEW_TOKENS)
    stop_sequences = StopSequencesField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].error_messages["invalid_choice"] = (
            "Unknown model %(value)s: pick a text-generating model from the catalog."
        )

    def clean_content(self) -> str:
        content = self.cleaned_data["content"]
        if not content.strip():
            raise forms.ValidationError("Type a message.")
        return content


def send_form(frame: dict[str, Any], saved: dict[str, Any] | None = None) -> SendForm:
    """A bound SendForm from a "send" frame: the frame's settings over `saved` (the conversation's)
    over the defaults, so a client may send only what changed."""
    raw_settings = frame.get("settings") or {}
    data: dict[str, Any] = {**services.DEFAULT_SETTINGS, **(saved or {})}
    if isinstance(raw_settings, dict):
        data.update({k: v for k, v in raw_settings.items() if k in services.DEFAULT_SETTINGS})
    for key in ("conversation", "model", "content", "system"):
        if key in frame:
            data[key] = frame[key]
    form = SendForm(data={k: v for k, v in data.items() if v is not None})
    if not isinstance(raw_settings, dict):
        form.add_error(None, "settings must be an object.")
    return form
