"""What the forms ask before queuing: the methods llmcore offers, and whether a configuration can run on
any worker that is alive now (check_quantize / check_finetune for each live device)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from playground.core.services import model_store, setting_rows
from playground.jobs.services.jobs import live_devices
from playground.jobs.services.runner import finetune_config


@dataclass
class Feasibility:
    devices_ok: list[str] = field(default_factory=list)  # live devices where it can run
    reasons: dict[str, list[str]] = field(default_factory=dict)  # device -> why not
    no_worker: bool = False  # nothing is alive: checked against a CPU worker, the job waits

    @property
    def ok(self) -> bool:
        return bool(self.devices_ok)

    def message(self) -> str:
        parts = [f"{'; '.join(r)}" for r in self.reasons.values() if r]
        where = ", ".join(self.reasons) or "cpu"
        return f"Cannot run on any connected worker ({where}): " + " ".join(dict.fromkeys(parts))


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
    is built from it, its defaults the values the runner would use."""
    module = _module("finetune")
    return setting_rows(module.FinetuneConfig) if module else []


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
        result.reasons = {d: ["Quantization is not available in this installation."] for d in devices}
        return result
    config = module.QuantizeConfig(method=method, group_size=group_size)
    for device in devices:
        reasons = list(module.check_quantize(config, model_store().path(base_model), device))
        result.reasons[device] = reasons
        if not reasons:
            result.devices_ok.append(device)
    return result


def check_finetune(
    params: dict[str, Any],
    method: str,
    base_model: str,
    dataset_format: str,
    found: tuple[list[str], bool] | None = None,
) -> Feasibility:
    module = _module("finetune")
    devices, none = found or _devices()
    result = Feasibility(no_worker=none)
    if module is None:
        result.reasons = {d: ["Fine-tuning is not available in this installation."] for d in devices}
        return result
    config = finetune_config(method, params, model_store().path(base_model))
    for device in devices:
        reasons = list(module.check_finetune(config, device, dataset_format))
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
        fmt = module.FORMATS_FOR[method][0]  # a dataset that fits: only the worker and settings count here
        feasible = check_finetune({}, method, base_model, fmt, found)
        if not feasible.ok:
            notes[method] = feasible.message()
    return notes
