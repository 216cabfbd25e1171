"""A job's report and settings as the pages show them (the job page, and the model page of what it made):
labels and units from what llmcore says of each number it reports (llmcore.jobs.Measure), never keys;
the quantize verdict computed from the measured numbers (llmcore.quantize.summary_sentence); and only the
settings that mean something for the job's method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmcore.finetune import FINAL_MEASURES
from llmcore.jobs import Measure, change
from llmcore.quantize import FACT_MEASURES, RATIOS, SIDE_MEASURES, summary_sentence
from playground.jobs.services import checks


@dataclass
class SideRow:
    """One measure of the parent beside the child's, and how it changed ("" for a fact)."""

    label: str
    unit: str
    parent: Any
    child: Any
    change: str = ""
    direction: int = 0  # 1 better, -1 worse, 0 about the same or not comparable


@dataclass
class FactRow:
    label: str
    unit: str
    value: Any


@dataclass
class ReportView:
    verdict: str
    sides: list[SideRow] = field(default_factory=list)
    facts: list[FactRow] = field(default_factory=list)
    bars: list[dict[str, Any]] = field(default_factory=list)  # the chart: the child as a share of the parent


def _described(key: str, known: dict[str, Measure]) -> Measure:
    """llmcore's description of `key`, or, for a key it does not describe (an older report), its words."""
    if key in known:
        return known[key]
    words = key.replace("_", " ")
    unit = "bytes" if key.endswith("_bytes") else "s" if key.endswith("_s") else ""
    return Measure(words.removesuffix(" bytes").removesuffix(" s").capitalize(), unit)


def _facts(report: dict[str, Any], known: dict[str, Measure], skip: set[str]) -> list[FactRow]:
    rows = []
    for key, value in report.items():
        if key not in skip and isinstance(value, int | float | str) and not isinstance(value, bool):
            measure = _described(key, known)
            rows.append(FactRow(measure.label, measure.unit, value))
    return rows


def report_view(report: dict[str, Any], kind: str) -> ReportView:
    """The quantize report (parent beside child, the facts, the verdict, the chart's bars) or a
    fine-tune's final metrics, ready for jobs/_report.html."""
    if kind != "quantize":
        return ReportView(str(report.get("summary") or ""), facts=_facts(report, FINAL_MEASURES, {"summary"}))
    parent, child = report.get("parent"), report.get("quantized")
    view = ReportView(summary_sentence(report) or str(report.get("summary") or ""))
    if isinstance(parent, dict) and isinstance(child, dict):
        view.sides, view.bars = _sides(parent, child)
    # the ratios are the change column of the sides
    view.facts = _facts(report, FACT_MEASURES, {"summary", "parent", "quantized", *RATIOS})
    return view


def _sides(parent: dict[str, Any], child: dict[str, Any]) -> tuple[list[SideRow], list[dict[str, Any]]]:
    keys = [k for k in SIDE_MEASURES if k in parent or k in child]
    keys += [k for k in parent if k in child and k not in SIDE_MEASURES]
    if "gguf_bytes" not in keys:  # without a GGUF file the safetensors are the size on disk: said once
        keys = [k for k in keys if k != "safetensors_bytes"]
    rows, bars = [], []
    for key in keys:
        measure = _described(key, SIDE_MEASURES)
        before, after = parent.get(key), child.get(key)
        moved = change(measure, before, after)
        rows.append(
            SideRow(
                measure.label,
                measure.unit,
                before,
                after,
                moved.text if moved else "",
                moved.direction if moved else 0,
            )
        )
        if moved:  # both are positive numbers then
            share = float(after) / float(before)  # type: ignore[arg-type]
            bars.append({"label": measure.label, "share": share, "direction": moved.direction})
    return rows, bars


def param_rows(kind: str, method: str, params: dict[str, Any]) -> list[tuple[str, Any]]:
    """A job's settings as (label, value): those given, that mean something for `method` (an older job
    may hold another method's, or a group size of None for a method without groups)."""
    rows = {r["name"]: r for r in (checks.quantize_rows() if kind == "quantize" else checks.finetune_rows())}
    shown = []
    for name, value in params.items():
        row = rows.get(name)
        if (
            value in (None, "", [])
            or name == "devices_ok"
            or (row and row["methods"] and method not in row["methods"])
        ):
            continue
        label = row["label"] if row else name.replace("_", " ").capitalize()
        shown.append((label, ", ".join(map(str, value)) if isinstance(value, list | tuple) else value))
    return shown
