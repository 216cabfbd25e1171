from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings

from playground.core.forms import sampler_fields
from playground.core.text import TextField
from playground.evaluate.services import METRICS, REFERENCE_SEPARATOR, TASKS, parse_labels, settings_problems
from playground.evaluate.services.runs import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    MAX_MODELS,
    RunSettings,
    model_choices,
    model_problems,
)

SAMPLER = sampler_fields(initial=True)  # the sampler's fields, bounded by llmcore.sampling


class SuiteForm(forms.Form):
    """A suite from an uploaded file or pasted JSONL, with its task, metrics and labels. The items are
    validated by the services (line by line); this form checks the settings, each beside its field."""

    name = TextField(what="The name", max_length=100, label="Name")
    description = TextField(
        what="The description", required=False, max_length=500, label="Description",
        widget=forms.Textarea(attrs={"rows": 2}),
    )  # fmt: skip
    task = forms.ChoiceField(choices=list(TASKS.items()), label="Task")
    metrics = forms.MultipleChoiceField(
        choices=list(METRICS.items()), widget=forms.CheckboxSelectMultiple, label="Metrics"
    )
    labels = TextField(
        what="The labels", required=False, max_length=1000, label="Labels",
        help_text="For classification and NLI: the classes, separated by commas (positive, negative).",
    )  # fmt: skip
    file = forms.FileField(
        required=False,
        label="Upload",
        help_text=f"JSONL, or CSV with columns input, reference(s) (several separated by "
        f"{REFERENCE_SEPARATOR}), tags (separated by commas), rubric, checks; up to "
        f"{settings.EVAL_SUITE_MAX_BYTES // 1024:,} KB and {settings.EVAL_SUITE_MAX_ITEMS:,} items.",
    )
    text = TextField(
        what="The pasted suite", required=False, label="Or paste JSONL",
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": '{"input": "…", "references": ["…"]}'}),
    )  # fmt: skip

    def clean_file(self) -> Any:
        """Refused by its size before a byte of it is read into memory (the parser checks the bytes too)."""
        upload = self.cleaned_data.get("file")
        limit = settings.EVAL_SUITE_MAX_BYTES
        if upload is not None and upload.size > limit:
            raise forms.ValidationError(f"The file is {upload.size:,} bytes; the limit is {limit:,} bytes.")
        return upload

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        data["labels"] = parse_labels(data.get("labels") or "")
        if not data.get("file") and not (data.get("text") or "").strip():
            self.add_error("file", "Upload a file or paste the items below.")
        if "task" in data and "metrics" in data:
            for name, problems in settings_problems(data["task"], data["metrics"], data["labels"]).items():
                for problem in problems:
                    self.add_error(name, problem)
        return data


class RunForm(forms.Form):
    """Run a suite on 1-4 models with one set of sampler settings and a seed. The sampler's bounds are
    llmcore's (SamplingConfig); the models are those the user may use, checked again by the services."""

    models = forms.MultipleChoiceField(
        choices=(), widget=forms.CheckboxSelectMultiple, label="Models",
        help_text=f"1 to {MAX_MODELS} text models; each answers every item.",
    )  # fmt: skip
    temperature = SAMPLER["temperature"]
    top_p = SAMPLER["top_p"]
    max_new_tokens = forms.IntegerField(
        min_value=1, max_value=settings.CHAT_MAX_NEW_TOKENS, initial=DEFAULT_MAX_NEW_TOKENS,
        label="Max new tokens", help_text="Per answer; the model's context length lowers it further.",
    )  # fmt: skip
    seed = forms.IntegerField(
        min_value=0, max_value=2**31 - 1, initial=0, label="Seed",
        help_text="The same seed and settings give the same answers.",
    )  # fmt: skip

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        models = cast(forms.MultipleChoiceField, self.fields["models"])
        models.choices = lambda: model_choices(user)
        models.error_messages["invalid_choice"] = (
            "Unknown model %(value)s: pick text models from the catalog."
        )
        self.fields["temperature"].initial = DEFAULT_TEMPERATURE
        self.user = user

    def clean_models(self) -> list[str]:
        names = list(dict.fromkeys(self.cleaned_data.get("models") or []))
        problems = model_problems(self.user, names)
        if problems:
            raise forms.ValidationError(problems)
        return names

    def run_settings(self) -> RunSettings:
        data = self.cleaned_data
        return RunSettings(
            temperature=data["temperature"], top_p=data["top_p"], max_new_tokens=data["max_new_tokens"],
            seed=data["seed"],
        )  # fmt: skip
