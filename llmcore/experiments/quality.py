"""Quality against latency and cost, from numbers already measured.

A quantize job's verify report (llmcore.quantize.verify) holds the child and its parent measured side by
side in one run: size on disk, memory, greedy decode tokens/s and perplexity on the held-out text. This
reads those reports and draws each child as a point against its parent; nothing runs again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmcore.experiments.common import chart, rnd, series
from llmcore.jobs import JobFailed

MB = 1e6


def _point(child: Mapping[str, Any]) -> dict[str, Any] | None:
    report = child.get("report") or {}
    parent, quantized = report.get("parent"), report.get("quantized")
    if not isinstance(parent, dict) or not isinstance(quantized, dict):
        return None  # the verify step failed: the report is a sentence only
    if not all(
        isinstance(side.get(k), int | float)
        for side in (parent, quantized)
        for k in ("disk_bytes", "perplexity")
    ):
        return None
    return {
        "model": str(child.get("name", "")),
        "method": str(child.get("method", "")),
        "size_mb": rnd(quantized["disk_bytes"] / MB, 2),
        "parent_size_mb": rnd(parent["disk_bytes"] / MB, 2),
        "memory_mb": rnd(quantized.get("memory_bytes", 0) / MB, 2),
        "parent_memory_mb": rnd(parent.get("memory_bytes", 0) / MB, 2),
        "tokens_per_s": rnd(quantized.get("tokens_per_s")),
        "parent_tokens_per_s": rnd(parent.get("tokens_per_s")),
        "perplexity": rnd(quantized["perplexity"], 3),
        "parent_perplexity": rnd(parent["perplexity"], 3),
        "top1_agreement": report.get("top1_agreement"),
        "device": str(report.get("device", "")),
    }


def quality_tradeoff(parent: str, children: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`children`: [{"name", "method", "report"}] for the quantized children of `parent`; those whose
    report lacks either side are left out. JobFailed when none is left."""
    rows = sorted((p for p in map(_point, children) if p), key=lambda r: r["size_mb"])
    if not rows:
        raise JobFailed(
            f"{parent} has no quantized child with a verify report yet: run a quantize job first."
        )

    def points(y: str) -> list[dict[str, Any]]:
        parents = series(f"{parent} (parent)", [(r["parent_size_mb"], r[f"parent_{y}"]) for r in rows])
        return [parents, *(series(r["model"], [(r["size_mb"], r[y])]) for r in rows)]

    smallest = rows[0]
    change = 100 * (smallest["perplexity"] / smallest["parent_perplexity"] - 1)
    smaller = smallest["parent_size_mb"] / max(smallest["size_mb"], 1e-9)
    summary = (
        f"{len(rows)} quantized {'child' if len(rows) == 1 else 'children'} of {parent}. The smallest, "
        f"{smallest['model']} ({smallest['method']}), is {smaller:.1f}x smaller on disk with {change:+.1f} % "
        f"perplexity and decodes at {smallest['tokens_per_s']} tokens/s against the parent's "
        f"{smallest['parent_tokens_per_s']}."
    )
    return {
        "kind": "quality",
        "model": parent,
        "device": ", ".join(sorted({r["device"] for r in rows if r["device"]})),
        "config": {},
        "seconds": 0.0,
        "engine": {},
        "charts": [
            chart(
                "perplexity",
                "Perplexity against size on disk",
                "MB on disk",
                "perplexity (lower is better)",
                points("perplexity"),
                mode="points",
            ),  # fmt: skip
            chart(
                "speed",
                "Decode speed against size on disk",
                "MB on disk",
                "tokens/s",
                points("tokens_per_s"),
                mode="points",
            ),  # fmt: skip
        ],
        "table": rows,
        "summary": summary,
        "notes": [
            "from the verify reports of the quantize jobs: each child measured beside its parent in one run"
        ],
    }
