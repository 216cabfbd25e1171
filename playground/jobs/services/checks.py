"""What the forms ask before queuing: the methods llmcore offers, and whether a configuration can run on
any worker that is alive now (check_quantize / check_finetune for each live device)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Any

from llmcore.config import Problem
from playground.core.services import model_store, setting_rows
from playground.jobs.services.jobs import live_devices
from playground.jobs.services.runner import TEACHER, finetune_config


@dataclass
class Feasibility:
    devices_ok: list[str] = field(default_factory=list)  # live devices where it can run
    reasons: dict[str, list[Any]] = field(default_factory=dict)  # device -> why not (llmcore Problems)
    no_worker: bool = False  # nothing is alive: checked against a CPU worker, the job waits

    @property
    def ok(self) -> bool:
        return bool(self.devices_ok)

    def message(self) -> str:
        return self._sentence([p.message for r in self.reasons.values() for p in r])

    def by_setting(self) -> dict[str, str]:
        """Where it cannot run, one message per setting the reasons concern ("" for the whole config),
        for a form to show beside each field; empty when it can run somewhere."""
        if self.ok:
            return {}
        found: dict[str, list[str]] = {}
        for problems in self.reasons.values():
            for problem in problems:
                found.setdefault(problem.setting, []).append(problem.message)
        return {name: self._sentence(messages) for name, messages in found.items()}

    def _sentence(self, messages: list[str]) -> str:
        where = ", ".join(self.reasons) or "cpu"
        return f"Cannot run on any connected worker ({where}): " + " ".join(dict.fromkeys(messages))


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(f"llmcore.{name}")
    except ImportError:
        return None


def quant_methods() -> dict[str, str]:
    module = _module("quantize")
    return dict(module.QUANT_METHODS) if module else {}


def finetune_methods() -> dict[str, str]:
    module = _module("finetune")
    return dict(module.FINETUNE_METHODS) if module else {}


def finetune_rows() -> list[dict[str, Any]]:
    """What FinetuneConfig says of each of its settings (core.services.setting_rows): the fine-tune form
    is built from it, its defaults the values the runner would use. The teacher is picked by catalog name,
    so its row is named as the job's param that holds it: teacher_model (runner.finetune_config)."""
    module = _module("finetune")
    rows = setting_rows(module.FinetuneConfig) if module else []
    return [{**r, "name": TEACHER} if r["name"] == "teacher_dir" else r for r in rows]


def quantize_rows() -> list[dict[str, Any]]:
    """What QuantizeConfig says of each of its settings: the quantize form's fields."""
    module = _module("quantize")
    return setting_rows(module.QuantizeConfig) if module else []


def default_method(kind: str, notes: dict[str, str]) -> str | None:
    """The method a form preselects: llmcore's choice for the kind where it can run on the live workers
    (`notes`: method_notes), else the first that can."""
    module = _module("finetune" if kind == "finetune" else "quantize")
    methods = finetune_methods() if kind == "finetune" else quant_methods()
    preferred = [getattr(module, "DEFAULT_METHOD", None), *methods]
    return next((m for m in preferred if m in methods and m not in notes), None)


def fitting_format(method: str) -> str | None:
    """A dataset format `method` takes: to check the rest of a job before a dataset is chosen (only the
    worker and the settings count then)."""
    module = _module("finetune")
    return module.FORMATS_FOR[method][0] if module and method in module.FORMATS_FOR else None


def _devices() -> tuple[list[str], bool]:
    """The live workers' devices, and True when there is none (then "cpu" is checked, for the form)."""
    devices = live_devices()
    return (devices, False) if devices else (["cpu"], True)


def check_quantize(
    method: str, group_size: int | None, base_model: str, found: tuple[list[str], bool] | None = None
) -> Feasibility:
    """`found`: _devices() when the caller checks many methods at once (one query, not one each)."""
    module = _module("quantize")
    devices, none = found or _devices()
    result = Feasibility(no_worker=none)
    if module is None:
        result.reasons = {
            d: [Problem("Quantization is not available in this installation.")] for d in devices
        }
        return result
    config = module.QuantizeConfig(method=method, group_size=group_size)
    for device in devices:
        reasons = list(module.quantize_problems(config, model_store().path(base_model), device))
        result.reasons[device] = reasons
        if not reasons:
            result.devices_ok.append(device)
    return result


def check_finetune(
    params: dict[str, Any],
    method: str,
    base_model: str,
    dataset_format: str | None,
    found: tuple[list[str], bool] | None = None,
) -> Feasibility:
    module = _module("finetune")
    devices, none = found or _devices()
    result = Feasibility(no_worker=none)
    if module is None:
        result.reasons = {d: [Problem("Fine-tuning is not available in this installation.")] for d in devices}
        return result
    config = finetune_config(method, params, model_store().path(base_model))
    for device in devices:
        # The teacher is the job's param teacher_model, as the form names it; its folder is llmcore's.
        reasons = [
            replace(p, setting=TEACHER) if p.setting == "teacher_dir" else p
            for p in module.finetune_problems(config, device, dataset_format)
        ]
        result.reasons[device] = reasons
        if not reasons:
            result.devices_ok.append(device)
    return result


def method_notes(kind: str, base_model: str | None) -> dict[str, str]:
    """For the form, before anything is submitted: each method that cannot run on any live worker with
    its default settings on `base_model`, and why (distill is checked on submit: it needs a teacher)."""
    if not base_model:
        return {}
    notes = {}
    found = _devices()
    if kind == "quantize":
        for method in quant_methods():
            feasible = check_quantize(method, None, base_model, found)
            if not feasible.ok:
                notes[method] = feasible.message()
        return notes
    module = _module("finetune")
    for method in finetune_methods():
        if method == "distill" or module is None:
            continue
        feasible = check_finetune({}, method, base_model, fitting_format(method), found)
        if not feasible.ok:
            notes[method] = feasible.message()
    return notes
