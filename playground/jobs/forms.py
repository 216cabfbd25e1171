"""Forms of the jobs app: every field with one line of help and explicit limits."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings

from playground.core.text import FloatField, TextField
from playground.jobs.models import Dataset

SCHEDULERS = [
    ("linear", "linear decay"),
    ("cosine", "cosine"),
    ("constant", "constant"),
    ("constant_with_warmup", "constant after warmup"),
]


def _int(label: str, help_text: str, lo: int, hi: int, initial: int | None, required: bool = False) -> Any:
    return forms.IntegerField(
        label=label, help_text=help_text, min_value=lo, max_value=hi, initial=initial, required=required
    )


def _float(label: str, help_text: str, lo: float, hi: float, initial: float | None) -> Any:
    return FloatField(
        label=label, help_text=help_text, min_value=lo, max_value=hi, initial=initial, required=False
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


DEFAULT_SAMPLE_EVERY = 10
DEFAULT_SAMPLE_PROMPTS = ("What is the capital of France?", "Give me one tip for a rainy day.")


class FinetuneForm(OutputNameMixin):
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
    student_layers = _int(
        "Student layers",
        "Distill only: build the student from the teacher's first N layers (empty: the base model is it).",
        1,
        256,
        None,
    )
    steps = _int("Steps", "Optimizer steps to run (empty: use epochs).", 1, 100_000, None)
    epochs = _float(
        "Epochs", "Passes over the dataset, when steps is empty (fractions allowed).", 0.01, 100, None
    )
    learning_rate = _float(
        "Learning rate", "Peak step size of AdamW, e.g. 2e-4 for LoRA, 2e-5 full.", 1e-8, 1, None
    )
    lr_scheduler = forms.ChoiceField(
        label="LR schedule", choices=SCHEDULERS, required=False, help_text="How the rate moves after warmup."
    )
    warmup_steps = _int(
        "Warmup steps", "Steps over which the rate climbs from 0 to its peak.", 0, 10_000, None
    )
    batch_size = _int("Batch size", "Examples per forward pass; lower it if memory runs out.", 1, 256, None)
    grad_accum = _int(
        "Gradient accumulation", "Batches summed before each step (effective batch).", 1, 256, None
    )
    max_seq_len = _int("Max sequence length", "Longer examples are cut to this many tokens.", 16, 8192, None)
    seed = _int("Seed", "Same seed, data and settings: the same run.", 0, 2**31 - 1, None)
    eval_fraction = _float(
        "Eval fraction", "Share of rows held out to measure eval loss (below 0.5).", 0, 0.49, None
    )
    lora_rank = _int("LoRA rank", "LoRA/QLoRA: rank r of the low-rank update matrices.", 1, 512, None)
    lora_alpha = _int("LoRA alpha", "LoRA/QLoRA: the update is scaled by alpha / r.", 1, 1024, None)
    lora_dropout = _float("LoRA dropout", "LoRA/QLoRA: dropout on the adapter's input.", 0, 0.9, None)
    target_modules = TextField(
        what="Target modules",
        label="Target modules",
        required=False,
        max_length=300,
        help_text="LoRA/QLoRA: comma-separated layer names, e.g. q_proj,v_proj (empty: the default).",
    )
    num_virtual_tokens = _int(
        "Virtual tokens", "Prompt tuning: learned embeddings put before every input.", 1, 512, None
    )
    dpo_beta = _float("DPO beta", "DPO: how far the policy may move from the reference.", 0.001, 10, None)
    distill_temperature = _float(
        "Distill temperature", "Distill: softens both distributions before comparing.", 0.1, 20, None
    )
    distill_alpha = _float(
        "Distill alpha", "Distill: weight of the teacher's loss vs. the data's loss (0-1).", 0, 1, None
    )
    checkpoint_every = _int(
        "Checkpoint every", "Save a checkpoint every n steps (resume starts there).", 1, 100_000, None
    )
    sample_every = _int(
        "Sample every", "Generate from the sample prompts every n steps (0: never).", 0, 100_000, None
    )
    sample_prompts = TextField(
        what="The sample prompts",
        label="Sample prompts",
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line (at most 5): shown with the model's answers as it trains.",
    )
    field_order = ["base_model", "method", "dataset", "output_name"]

    def __init__(
        self, *args: Any, models: list[str], methods: dict[str, str], owner: Any, **kwargs: Any
    ) -> None:
        defaults = kwargs.pop("defaults", {})
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["base_model"]).choices = [(m, m) for m in models]
        cast(forms.ChoiceField, self.fields["teacher_model"]).choices = [("", "-")] + [(m, m) for m in models]
        cast(forms.ChoiceField, self.fields["method"]).choices = [
            (k, f"{k}: {v}") for k, v in methods.items()
        ]
        cast(forms.ModelChoiceField, self.fields["dataset"]).queryset = Dataset.objects.filter(
            owner=owner, errors=[], rows__gt=0
        )
        for name, value in defaults.items():
            if name in self.fields and isinstance(value, int | float | str) and not isinstance(value, bool):
                self.fields[name].initial = value
            elif name == "target_modules" and isinstance(value, list | tuple):
                self.fields[name].initial = ",".join(value)
            elif name == "sample_prompts" and isinstance(value, list | tuple):
                self.fields[name].initial = "\n".join(value)
        # The job page shows how answers change as the model trains: on by default, every 10 steps.
        if not self.fields["sample_every"].initial:
            self.fields["sample_every"].initial = DEFAULT_SAMPLE_EVERY
        if not self.fields["sample_prompts"].initial:
            self.fields["sample_prompts"].initial = "\n".join(DEFAULT_SAMPLE_PROMPTS)

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
