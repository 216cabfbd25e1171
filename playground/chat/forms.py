"""The chat's forms: what a "send" frame may carry, saved sampler presets and the prompt library's
templates. Every field is bounded and every error is in words."""

from __future__ import annotations

import copy
from typing import Any, cast

from django import forms
from django.conf import settings
from django.core.validators import MaxLengthValidator

from playground.chat import services
from playground.chat.models import PromptTemplate, SamplerPreset
from playground.core.forms import MAX_CANDIDATES, StopSequencesField, sampler_form
from playground.core.forms_structured import clean_output_format, output_format_form
from playground.core.text import TextField, TextValidator

SPECULATIVE_CHOICES = [
    ("off", "off"),
    ("prompt_lookup", "prompt lookup (copies n-grams of the conversation)"),
    ("draft", "draft model"),
    ("auto", "auto (prompt lookup while it pays)"),
]


class SendForm(sampler_form(), output_format_form()):  # type: ignore[misc]  # sampler, output format
    conversation = forms.IntegerField(min_value=1, required=False)
    model = forms.ChoiceField(choices=services.model_choices)
    content = TextField(
        what="The message",
        max_length=settings.CHAT_MAX_PROMPT_CHARS,
        strip=False,
        error_messages={"required": "Type a message."},
    )
    system = TextField(
        what="The system prompt", max_length=settings.CHAT_MAX_SYSTEM_CHARS, strip=False, required=False
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=settings.CHAT_MAX_NEW_TOKENS)
    stop_sequences = StopSequencesField(required=False)
    best_of = forms.IntegerField(min_value=1, max_value=MAX_CANDIDATES, label="Best of N")
    num_beams = forms.IntegerField(min_value=1, max_value=MAX_CANDIDATES, label="Beams")
    speculative = forms.ChoiceField(choices=SPECULATIVE_CHOICES, label="Speculative decoding")
    draft_model = forms.ChoiceField(choices=(), required=False, label="Draft model")
    speculative_tokens = forms.IntegerField(min_value=1, max_value=16, label="Proposed tokens")

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["draft_model"]).choices = lambda: [
            ("", "none"),
            *services.draft_choices(user),
        ]
        self.fields["draft_model"].error_messages["invalid_choice"] = (
            "Unknown draft model %(value)s: pick a catalog model with the same tokenizer."
        )
        # The models this user may use (no user: the shared ones); another's private model reads as unknown.
        cast(forms.ChoiceField, self.fields["model"]).choices = lambda: services.model_choices(user)
        self.fields["model"].error_messages["invalid_choice"] = (
            "Unknown model %(value)s: pick a text-generating model from the catalog."
        )

    def clean_content(self) -> str:
        content = self.cleaned_data["content"]
        if not content.strip():
            raise forms.ValidationError("Type a message.")
        return content

    # The model a conversation was saved with, when the frame named none (see send_form).
    conversation_model: str | None = None

    def clean(self) -> dict[str, Any]:
        if "model" in self.errors and self.conversation_model:
            # Regenerate, continue, replay...: the person chose no model, so say which one is gone.
            self.errors["model"] = self.error_class(
                [
                    f"{self.conversation_model}, the model of this conversation, is no longer in the "
                    "catalog (or no longer shared with you): pick another model to go on."
                ]
            )
        check_speculative(self)
        check_output_format(self)
        return check_best_of_or_beams(self)


def send_form(frame: dict[str, Any], saved: dict[str, Any] | None = None, user: Any = None) -> SendForm:
    """A bound SendForm from a "send" frame: the frame's settings over `saved` (the conversation's)
    over the defaults, so a client may send only what changed. The model must be one `user` may use."""
    raw_settings = frame.get("settings") or {}
    data: dict[str, Any] = {**services.DEFAULT_SETTINGS, **(saved or {})}
    if isinstance(raw_settings, dict):
        data.update({k: v for k, v in raw_settings.items() if k in services.DEFAULT_SETTINGS})
    for key in ("conversation", "model", "content", "system"):
        if key in frame:
            data[key] = frame[key]
    form = SendForm(data={k: v for k, v in data.items() if v is not None}, user=user)
    if "model" not in frame and saved:
        form.conversation_model = saved.get("model")
    if not isinstance(raw_settings, dict):
        form.add_error(None, "settings must be an object.")
    return form


def check_speculative(form: forms.Form) -> None:
    """Speculation checks one sequence's guesses: a draft needs a model, and it is not for N candidates."""
    cleaned = form.cleaned_data
    method = cleaned.get("speculative") or "off"
    if method == "draft" and not cleaned.get("draft_model"):
        form.add_error("draft_model", "Choose the draft model that proposes tokens.")
    if method != "off" and ((cleaned.get("best_of") or 1) > 1 or (cleaned.get("num_beams") or 1) > 1):
        form.add_error("speculative", "Speculative decoding runs one answer: set best of N and beams to 1.")


def check_output_format(form: forms.Form) -> None:
    """A JSON schema (or any JSON object) is enforced one token at a time: not with speculation or beams."""
    constraint = clean_output_format(form)
    cleaned = form.cleaned_data
    speculative = (cleaned.get("speculative") or "off") != "off"
    if constraint is not None and (speculative or (cleaned.get("num_beams") or 1) > 1):
        form.add_error(
            "response_format",
            "JSON output is enforced one token at a time: turn speculative decoding off and set beams to 1.",
        )


def check_best_of_or_beams(form: forms.Form) -> dict[str, Any]:
    """The engine runs best-of-N or beam search, never both at once: say so next to the setting."""
    cleaned = form.cleaned_data
    if (cleaned.get("best_of") or 1) > 1 and (cleaned.get("num_beams") or 1) > 1:
        form.add_error("num_beams", "Choose best-of-N or beam search, not both: set one of them to 1.")
    return cleaned


# --- saved sampler presets ------------------------------------------------------------------------
class PresetForm(forms.Form):
    """A name and the sampler settings of the chat panel, validated by SendForm's own fields, so a preset
    only ever holds what a "send" frame accepts."""

    preset_name = TextField(
        what="The preset name",
        max_length=60,
        label="Preset name",
        error_messages={"required": "Name the preset."},
    )

    def __init__(self, *args: Any, owner: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        for key in services.PRESET_KEYS:
            self.fields[key] = copy.deepcopy(SendForm.base_fields[key])
        cast(forms.ChoiceField, self.fields["draft_model"]).choices = lambda: [
            ("", "none"),
            *services.draft_choices(owner),
        ]

    @classmethod
    def from_post(cls, post: Any, owner: Any) -> PresetForm:
        """The settings panel posts stop sequences as one textarea, one per line."""
        data = {key: post.get(key) for key in ["preset_name", *services.PRESET_KEYS] if key in post}
        data["stop_sequences"] = [s for s in (post.get("stop_sequences") or "").splitlines() if s]
        return cls(data, owner=owner)

    def clean_preset_name(self) -> str:
        name = self.cleaned_data["preset_name"].strip()
        if not name:
            raise forms.ValidationError("Name the preset.")
        if SamplerPreset.objects.filter(owner=self.owner, name=name).exists():
            raise forms.ValidationError(f"You already have a preset named “{name}”: pick another name.")
        return name

    def clean(self) -> dict[str, Any]:
        check_speculative(self)
        return check_best_of_or_beams(self)

    def values(self) -> dict[str, Any]:
        return {key: self.cleaned_data[key] for key in services.PRESET_KEYS}


# --- the prompt library ---------------------------------------------------------------------------
MAX_EXAMPLES = 20
MAX_EXAMPLE_CHARS = 2_000


class PromptTemplateForm(forms.ModelForm):
    class Meta:
        model = PromptTemplate
        fields = ["name", "category", "description", "system", "template"]
        help_texts = {
            "template": "The message sent to the model. Write {placeholders} for what to fill in; "
            "{examples} marks where the few-shot examples go (else they come first).",
            "system": "Optional instructions the model sees before the conversation.",
        }
        error_messages = {
            "name": {"required": "Give the template a name."},
            "template": {"required": "Write the template: the message the model receives."},
        }

    def __init__(self, *args: Any, owner: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        cast(forms.CharField, self.fields["template"]).max_length = settings.CHAT_MAX_PROMPT_CHARS
        self.fields["template"].validators.append(MaxLengthValidator(settings.CHAT_MAX_PROMPT_CHARS))
        cast(forms.CharField, self.fields["system"]).max_length = settings.CHAT_MAX_SYSTEM_CHARS
        self.fields["system"].validators.append(MaxLengthValidator(settings.CHAT_MAX_SYSTEM_CHARS))
        cast(forms.CharField, self.fields["template"]).strip = False
        self.fields["template"].widget.attrs["maxlength"] = settings.CHAT_MAX_PROMPT_CHARS
        self.fields["system"].widget.attrs["maxlength"] = settings.CHAT_MAX_SYSTEM_CHARS
        for name, field in self.fields.items():
            field.validators.append(TextValidator(f"The {name}"))

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = PromptTemplate.objects.filter(owner=self.owner, name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"You already have a template named “{name}”: pick another name.")
        return name

    def clean_template(self) -> str:
        template = self.cleaned_data["template"]
        if not template.strip():
            raise forms.ValidationError("Write the template: the message the model receives.")
        return template


class ExampleForm(forms.Form):
    input = TextField(
        what="The input", max_length=MAX_EXAMPLE_CHARS, strip=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Give the example an input (or tick Remove)."},
    )  # fmt: skip
    output = TextField(
        what="The output", max_length=MAX_EXAMPLE_CHARS, strip=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Give the example an output (or tick Remove)."},
    )  # fmt: skip


class BaseExampleFormSet(forms.BaseFormSet):
    default_error_messages = {
        **forms.BaseFormSet.default_error_messages,
        "too_many_forms": f"At most {MAX_EXAMPLES} examples.",
    }

    def examples(self) -> list[dict[str, str]]:
        """The kept rows (filled in, not marked Remove), in order."""
        return [
            {"input": f.cleaned_data["input"], "output": f.cleaned_data["output"]}
            for f in self.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]


# Blank rows are skipped; each save or "Add an example" shows one more blank row, so the editor works
# without JavaScript.
ExampleFormSet = forms.formset_factory(
    ExampleForm,
    formset=BaseExampleFormSet,
    extra=1,
    can_delete=True,
    max_num=MAX_EXAMPLES,
    validate_max=True,
    absolute_max=MAX_EXAMPLES + 5,
)
