"""Forms of the jobs app: every field with one line of help and explicit limits.

The job forms (MethodForm) put their fields in groups (fieldsets) and know which methods each setting
concerns, from the llmcore config's own description (Setting.methods and .group, via checks'
finetune_rows / quantize_rows). The page tags each method-specific field with its methods; jobs/form.js
shows only the chosen method's, and without JavaScript every field shows, labelled with the methods it
applies to. On submit the values of the other methods' settings are ignored, never refused, and every
problem (a field, the output name, what the workers cannot run) is reported at once, beside its field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.conf import settings

from playground.catalog.fields import LocalModelField
from playground.core.forms import setting_field
from playground.core.text import TextField
from playground.jobs.models import Dataset
from playground.jobs.services import checks
from playground.jobs.services.jobs import JobError, output_name_for
from playground.jobs.services.runner import TEACHER


@dataclass
class FieldGroup:
    """One fieldset of a job form: its legend, a line of help, and its fields with the methods each
    concerns (empty: every method)."""

    name: str
    legend: str
    hint: str
    fields: list[dict[str, Any]]  # {"field": BoundField, "methods": [...]}


class MethodForm(forms.Form):
    """A job form with a `method` field, an `output_name` and settings described by llmcore `rows`."""

    output_name = TextField(
        what="The name",
        label="Name of the result",
        required=False,
        max_length=64,
        help_text="Its catalog name: lowercase letters, digits, '.', '_' or '-'. Empty: base-method-n.",
    )
    method = forms.ChoiceField(label="Method", widget=forms.RadioSelect)
    GROUPS: dict[str, tuple[str, str]] = {}  # group name -> (legend, hint), in the page's order
    PLACES: dict[str, str] = {}  # the group of each field that is not an llmcore setting
    SKIP = ("base_model", "method", "dataset", "output_name")  # not settings: params() leaves them out
    feasible: checks.Feasibility | None = None  # what the workers said, once clean() could ask them

    def __init__(
        self, *args: Any, rows: list[dict[str, Any]], methods: dict[str, str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["method"]).choices = [
            (k, f"{k}: {v}") for k, v in methods.items()
        ]
        self.methods_of = {r["name"]: tuple(r["methods"]) for r in rows if r["name"] in self.fields}
        self.group_of = {**{r["name"]: r["group"] for r in rows}, **self.PLACES}

    def applies(self, name: str, method: str | None) -> bool:
        methods = self.methods_of.get(name, ())
        return not methods or method is None or method in methods

    def groups(self) -> list[FieldGroup]:
        """The fields in their fieldsets, in the form's field order."""
        found = []
        for name, (legend, hint) in self.GROUPS.items():
            fields = [
                {"field": self[f], "methods": self.methods_of.get(f, ())}
                for f in self.fields
                if self.group_of.get(f, "data") == name
            ]
            found.append(FieldGroup(name, legend, hint, fields))
        return found

    def problem_labels(self) -> list[str]:
        """The label of each field refused, in the page's order: the summary above the form."""
        return [str(f.label) for f in self if f.errors]

    def clean_output_name(self) -> str:
        name = self.cleaned_data["output_name"]
        try:
            return output_name_for("", "", name) if name else name
        except JobError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        super().clean()
        method = self.cleaned_data.get("method")
        if method:  # another method's settings mean nothing here: their values are neither kept nor refused
            for name in self.fields:
                if not self.applies(name, method):
                    self.errors.pop(name, None)
                    self.cleaned_data.pop(name, None)
        return self.cleaned_data

    def add_problems(self, feasible: checks.Feasibility) -> None:
        """What keeps the job from running on the live workers, each beside the field it concerns (the
        method's field for the job as a whole), unless that field was already refused for its own sake."""
        self.feasible = feasible
        for setting, message in feasible.by_setting().items():
            name = setting if setting in self.fields else "method"
            if name == "method" or name not in self.errors:
                self.add_error(name, message)

    def params(self) -> dict[str, Any]:
        """The chosen method's settings that were given (clean() dropped the others')."""
        return {k: v for k, v in self.cleaned_data.items() if k not in self.SKIP and v not in (None, "")}


# QuantizeConfig and FinetuneConfig describe their own settings (llmcore.quantize, llmcore.finetune,
# llmcore.config): the forms' number and choice fields are built from those descriptions, their defaults
# the initial values.
QUANTIZE = {row["name"]: row for row in checks.quantize_rows()}
FINETUNE = {row["name"]: row for row in checks.finetune_rows()}
LIST_SETTINGS = ("target_modules", "sample_prompts")  # entered as text, split by clean_<name>


def _setting_fields(rows: dict[str, dict[str, Any]], skip: tuple[str, ...] = ()) -> dict[str, forms.Field]:
    return {name: setting_field(row, initial=True) for name, row in rows.items() if name not in skip}


_QuantizeSettings: Any = type("QuantizeSettings", (forms.Form,), _setting_fields(QUANTIZE))


class QuantizeForm(MethodForm, _QuantizeSettings):
    base_model = LocalModelField(
        label="Model", help_text="The catalog model to quantize (the parent).", what="quantization"
    )
    field_order = ["base_model", "output_name", "method", *QUANTIZE]
    GROUPS = {
        "data": ("Model", "The model to quantize, and the name its quantized copy takes in the catalog."),
        "method": ("Method", "How the weights are stored; each method says what it does to them."),
    }
    PLACES = {"method": "method"}

    def __init__(self, *args: Any, models: list[str], methods: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, rows=list(QUANTIZE.values()), methods=methods, **kwargs)
        cast(forms.ChoiceField, self.fields["base_model"]).choices = [(m, m) for m in models]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("method") and data.get("base_model"):
            self.add_problems(
                checks.check_quantize(data["method"], data.get("group_size"), data["base_model"])
            )
        return data


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


_FinetuneSettings: Any = type(
    "FinetuneSettings", (forms.Form,), _setting_fields(FINETUNE, (*LIST_SETTINGS, TEACHER))
)


class FinetuneForm(MethodForm, _FinetuneSettings):
    base_model = LocalModelField(
        label="Base model", help_text="The catalog model to train (the parent).", what="fine-tuning"
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        label="Dataset",
        help_text="One of your datasets without errors (upload one or pick a sample on the datasets page).",
    )
    teacher_model = LocalModelField(
        what="distillation",
        label=FINETUNE.get(TEACHER, {}).get("label", "Teacher"),
        help_text=FINETUNE.get(TEACHER, {}).get("hint", ""),
        required=False,
    )
    target_modules = _text_setting("target_modules", 300)
    sample_prompts = _text_setting("sample_prompts", 4000, widget=forms.Textarea(attrs={"rows": 3}))
    field_order = ["base_model", "dataset", "output_name", "method", *FINETUNE]
    GROUPS = {
        "data": ("Model and data", "What to train, on which rows, and what the result is called."),
        "method": ("Method", "How the model learns; the settings below the methods belong to some of them."),
        "schedule": ("Schedule", "How the learning rate moves, and how examples make up each step."),
        "limits": ("Limits", "How long it runs, how much memory a step takes, and how often it saves."),
    }
    PLACES = {"method": "method"}

    def __init__(
        self, *args: Any, models: list[str], methods: dict[str, str], owner: Any, **kwargs: Any
    ) -> None:
        super().__init__(*args, rows=list(FINETUNE.values()), methods=methods, **kwargs)
        cast(forms.ChoiceField, self.fields["base_model"]).choices = [(m, m) for m in models]
        cast(forms.ChoiceField, self.fields["teacher_model"]).choices = [("", "-")] + [(m, m) for m in models]
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
        data = super().clean()
        if data.get("method") == "distill":
            self._clean_distill(data)
        if data.get("method") and data.get("base_model"):
            fmt = data["dataset"].format if data.get("dataset") else checks.fitting_format(data["method"])
            self.add_problems(checks.check_finetune(self.params(), data["method"], data["base_model"], fmt))
        return data

    def _clean_distill(self, data: dict[str, Any]) -> None:
        if not data.get(TEACHER):
            self.add_error(TEACHER, "Distillation needs a teacher model.")
            return
        same = data.get(TEACHER) == data.get("base_model")
        if data.get("student_layers") and not same:
            self.add_error(
                "base_model",
                "With Student layers the student is cut from the teacher: choose the teacher as the base "
                "model too (it becomes the new model's parent).",
            )
        elif same and not data.get("student_layers"):
            self.add_error(
                TEACHER,
                "The teacher must differ from the student: pick another base model, or set Student "
                "layers to build a smaller student from the teacher's first layers.",
            )


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
