"""A quantize job's report as table rows: for the job's page and the quantized model's catalog page."""

from __future__ import annotations

from typing import Any


def side_by_side(report: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Rows of (measure, parent, quantized) when the report measured both side by side."""
    parent, child = report.get("parent"), report.get("quantized")
    if not isinstance(parent, dict) or not isinstance(child, dict):
        return []
    return [(k, parent[k], child[k]) for k in parent if k in child]


def report_rows(report: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """The quantize report (or the final metrics) as table rows; nested sections become "section.key"."""
    rows: list[tuple[str, Any]] = []
    for key, value in report.items():
        if key == "summary":
            continue
        if isinstance(value, dict) and key not in ("parent", "quantized") and not prefix:
            rows.extend(report_rows(value, f"{key}."))
        elif isinstance(value, int | float | str) and not isinstance(value, bool):
            rows.append((f"{prefix}{key}", value))
    return rows
