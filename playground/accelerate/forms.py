"""The experiment form, built from the llmcore config fields' metadata (their bounds, choices and help).

Every experiment's parameters are on the page (one fieldset each, named `<kind>-<field>`); only the
chosen experiment's are read, so a stale value in another fieldset never refuses the form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

from django import forms

from playground.accelerate import services
from playground.catalog.fields import LocalModelField
from playground.catalog.models import ModelEntry


def _field_for(f: dataclasses.Field[Any]) -> forms.Field:
    meta, label = f.metadata, f.name.replace("_", " ").capitalize()
    help_text = meta.get("help", "")
    if "choices" in meta:
        return forms.TypedMultipleChoiceField(
            label=label,
            help_text=help_text,
            choices=[(str(c), str(c)) for c in meta["choices"]],
            coerce=cast(Callable[[Any], Any], type(meta["choices"][0])),
            widget=forms.CheckboxSelectMultiple,
            required=False,
            initial=[str(c) for c in f.default] if isinstance(f.default, tuple) else [],
        )
    if "min" in meta:
        return forms.IntegerField(
            label=label,
            help_text=f"{help_text} {meta['min']}-{meta['max']}.",
            min_value=meta["min"],
            max_value=meta["max"],
            initial=f.default,
            required=False,
        )
    # draft_model: a model name; the choices are the user's text models, set in __init__
    return forms.ChoiceField(label="Draft model", help_text=help_text, required=False, initial="")


class ExperimentForm(forms.Form):
    model = LocalModelField(
        label="Model",
        help_text="The catalog model whose engine is measured.",
        what="the engine's experiments",
    )
    experiment = forms.ChoiceField(
        label="Experiment",
        widget=forms.RadioSelect,
        choices=[(k, f"{label}: {what}") for k, (label, _, what) in services.EXPERIMENTS.items()],
        initial="batching",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.models: dict[str, ModelEntry] = {m.name: m for m in services.text_models(user)}
        names = [(m, m) for m in self.models]
        cast(forms.ChoiceField, self.fields["model"]).choices = names
        self.parameters: dict[str, list[str]] = {}
        for kind in services.EXPERIMENTS:
            self.parameters[kind] = []
            for f in services.experiment_fields(kind):
                name = f"{kind}-{f.name}"
                self.fields[name] = _field_for(f)
                self.parameters[kind].append(name)
                if f.name == "draft_model":
                    cast(forms.ChoiceField, self.fields[name]).choices = [
                        ("", "none: prompt lookup only"),
                        *names,
                    ]

    def fieldsets(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """(kind, label, bound fields) for the template, one fieldset per experiment."""
        return [
            (kind, services.EXPERIMENTS[kind][0], [self[name] for name in names])
            for kind, names in self.parameters.items()
        ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        kind = data.get("experiment")
        if kind not in self.parameters:
            return data
        for other, names in self.parameters.items():  # another experiment's fields do not count
            for name in names if other != kind else ():
                self.errors.pop(name, None)
        if any(name in self.errors for name in self.parameters[kind]):
            return data
        params = {}
        for name in self.parameters[kind]:
            value = data.get(name)
            if value not in (None, ""):  # a number left empty: the experiment's default
                params[name.split("-", 1)[1]] = value
        try:
            data["config"] = services.experiments.config_for(kind, params)
        except services.ExperimentError as exc:
            self.add_error(f"{kind}-{exc.field}" if exc.field else None, str(exc))
            return data
        model = self.models.get(data.get("model", ""))
        if model is not None:
            self._check_against(model, kind, data["config"])
        return data

    def _check_against(self, model: ModelEntry, kind: str, config: Any) -> None:
        """What the config cannot do on this model, beside the field it concerns."""
        if kind == "attention" and model.context_length:
            too_long = [n for n in config.lengths if n >= model.context_length]
            if too_long:
                fits = [str(n) for n in services.experiments.PREFILL_LENGTHS if n < model.context_length]
                self.add_error(
                    "attention-lengths",
                    f"{model.name} reads at most {model.context_length:,} tokens: {too_long[0]:,} does not "
                    f"fit (choose from {', '.join(fits)}).",
                )
        if kind == "speculative" and config.draft_model:
            problem = services.draft_problem(model.name, config.draft_model)
            if problem:
                self.add_error("speculative-draft_model", problem)
        if kind == "quality" and not services.quantized_children(self.user, model.name):
            self.add_error(
                "model",
                f"{model.name} has no quantized child with a verify report yet: quantize it first "
                "(Jobs, New quantize), then compare the children here.",
            )
