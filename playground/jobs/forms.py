"""Forms of the jobs app: every field with one line of help and explicit limits."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings

from playground.core.forms import setting_field
from playground.core.text import TextField
from playground.jobs.models import Dataset
from playground.jobs.services import checks


def _int(label: str, help_text: str, lo: int, hi: int, initial: int | None, required: bool = False) -> Any:
    return forms.IntegerField(
        label=label, help_text=help_text, min_value=lo, max_value=hi, initial=initial, required=required
    )


class OutputNameMixin(forms.Form):
    output_name = TextField(
        what="The name",
        label="Name of the result",
        required=False,
        max_length=64,
        help_text="Its catalog name: lowercase letters, digits, '.', '_' or '-'. Empty: base-method-n.",
    )


class QuantizeForm(OutputNameMixin):
    base_model = forms.ChoiceField(label="Model", help_text="The catalog model to quantize (the parent).")
    method = forms.ChoiceField(label="Method", widget=forms.RadioSelect)
    group_size = _int(
        "Group size",
        "Weights per scale for group-wise methods (int4): must divide the layer widths. Empty: the default.",
        8,
        4096,
        None,
    )
    field_order = ["base_model", "method", "group_size", "output_name"]

    def __init__(self, *args: Any, models: list[str], methods: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["base_model"]).choices = [(m, m) for m in models]
        cast(forms.ChoiceField, self.fields["method"]).choices = [
            (k, f"{k}: {v}") for k, v in methods.items()
        ]


# FinetuneConfig describes its own settings (llmcore.finetune, llmcore.config): the fine-tune form's
# number and choice fields are built from that description, its defaults as initial values.
FINETUNE = {row["name"]: row for row in checks.finetune_rows()}
LIST_SETTINGS = ("target_modules", "sample_prompts")  # entered as text, split by clean_<name>


def _finetune_fields() -> dict[str, forms.Field]:
    return {
        name: setting_field(row, initial=True) for name, row in FINETUNE.items() if name not in LIST_SETTINGS
    }


def _text_setting(name: str, max_length: int, **kwargs: Any) -> Any:
    row = FINETUNE.get(name, {"label": name, "hint": ""})
    return TextField(
        what=row["label"],
        label=row["label"],
        help_text=row["hint"],
        required=False,
        max_length=max_length,
        **kwargs,
    )


class FinetuneForm(OutputNameMixin, type("FinetuneSettings", (forms.Form,), _finetune_fields())):  # type: ignore[misc]
    base_model = forms.ChoiceField(label="Base model", help_text="The catalog model to train (the parent).")
    method = forms.ChoiceField(label="Method", widget=forms.RadioSelect)
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        label="Dataset",
        help_text="One of your datasets without errors (upload one or pick a sample on the datasets page).",
    )
    teacher_model = forms.ChoiceField(
        label="Teacher (distill)", required=False, help_text="Distill only: the larger model to imitate."
    )
    target_modules = _text_setting("target_modules", 300)
    sample_prompts = _text_setting("sample_prompts", 4000, widget=forms.Textarea(attrs={"rows": 3}))
    field_order = ["base_model", "method", "dataset", "output_name", "teacher_model", *FINETUNE]

    def __init__(
        self, *args: Any, models: list[str], methods: dict[str, str], owner: Any, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["base_model"]).choices = [(m, m) for m in models]
        cast(forms.ChoiceField, self.fields["teacher_model"]).choices = [("", "-")] + [(m, m) for m in models]
        cast(forms.ChoiceField, self.fields["method"]).choices = [
            (k, f"{k}: {v}") for k, v in methods.items()
        ]
        cast(forms.ModelChoiceField, self.fields["dataset"]).queryset = Dataset.objects.filter(
            owner=owner, errors=[], rows__gt=0
        )
        for name in LIST_SETTINGS:
            default = FINETUNE.get(name, {}).get("default") or ()
            self.fields[name].initial = ("," if name == "target_modules" else "\n").join(default)

    def clean_sample_prompts(self) -> list[str] | None:
        lines = [line.strip() for line in self.cleaned_data["sample_prompts"].splitlines() if line.strip()]
        if len(lines) > 5:
            raise forms.ValidationError("At most 5 sample prompts.")
        return lines or None

    def clean_target_modules(self) -> list[str] | None:
        names = [n.strip() for n in self.cleaned_data["target_modules"].split(",") if n.strip()]
        for name in names:
            if not name.replace("_", "").replace(".", "").isalnum():
                raise forms.ValidationError(f"{name!r} is not a layer name.")
        return names or None

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("method") == "distill" and not data.get("teacher_model"):
            self.add_error("teacher_model", "Distillation needs a teacher model.")
        if data.get("method") == "distill" and data.get("teacher_model"):
            same = data.get("teacher_model") == data.get("base_model")
            if data.get("student_layers") and not same:
                self.add_error(
                    "base_model",
                    "With Student layers the student is cut from the teacher: choose the teacher as the base "
                    "model too (it becomes the new model's parent).",
                )
            elif same and not data.get("student_layers"):
                self.add_error(
                    "teacher_model",
                    "The teacher must differ from the student: pick another base model, or set Student "
                    "layers to build a smaller student from the teacher's first layers.",
                )
        return data

    def params(self) -> dict[str, Any]:
        skip = {"base_model", "method", "dataset", "output_name"}
        return {k: v for k, v in self.cleaned_data.items() if k not in skip and v not in (None, "")}


class DatasetForm(forms.Form):
    file = forms.FileField(
        required=False,
        label="Upload",
        help_text=f"JSONL, JSON, CSV or TXT, up to {settings.DATASET_MAX_BYTES // 1024 // 1024} MB "
        f"and {settings.DATASET_MAX_ROWS:,} rows.",
    )
    text = TextField(
        what="The pasted text",
        required=False,
        label="Or paste",
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="JSONL (one JSON object a line) or plain text (rows split at blank lines).",
    )
    name = TextField(
        what="The name", required=False, max_length=100, label="Name", help_text="For the list (optional)."
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not data.get("file") and not (data.get("text") or "").strip():
            raise forms.ValidationError("Upload a file or paste some rows.")
        return data
