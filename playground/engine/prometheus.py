"""The engines' numbers in Prometheus' text exposition format (version 0.0.4), written by hand: a few
lines of text, where prometheus_client would be one more dependency and a registry to keep in step.

Every engine sample is labelled by model and worker; gauges are the current values, `_total` counters the
totals since the engine started. Only live workers' engines are exported (a gone worker's counters stop,
as a restarted process's would); `playground_engine_worker_up` says which workers are gone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from playground.engine.services import EngineOverview

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "playground_engine_"
Reader = Callable[[dict[str, Any]], float | None]

# name (after PREFIX), type, help, how to read it from Engine.metrics()
# fmt: off
ENGINE_FAMILIES: list[tuple[str, str, str, Reader]] = [
    ("active_sequences", "gauge", "Sequences decoding now (each best-of candidate and beam counts).",
     lambda m: m["active_sequences"]),
    ("active_requests", "gauge", "Requests admitted and running now.", lambda m: m["active_requests"]),
    ("waiting_requests", "gauge", "Requests waiting for room to start.", lambda m: m["waiting_requests"]),
    ("max_sequences", "gauge", "Most sequences decoded together (ENGINE_MAX_SEQUENCES).",
     lambda m: m["max_sequences"]),
    ("kv_cache_used_bytes", "gauge", "KV cache bytes the running sequences fill.",
     lambda m: m["kv_cache_used_bytes"]),
    ("kv_cache_allocated_bytes", "gauge", "KV cache bytes allocated.", lambda m: m["kv_cache_bytes"]),
    ("kv_cache_budget_bytes", "gauge", "KV cache budget in bytes (ENGINE_KV_CACHE_MB).",
     lambda m: m["kv_cache_budget_bytes"]),
    ("prefix_cache_blocks", "gauge", "Prompt-prefix KV blocks kept for reuse.",
     lambda m: m["prefix_cache"]["blocks"]),
    ("prefix_cache_bytes", "gauge", "Bytes the prefix cache holds.", lambda m: m["prefix_cache"]["bytes"]),
    ("prefix_cache_budget_bytes", "gauge", "Prefix cache budget in bytes (ENGINE_PREFIX_CACHE_MB).",
     lambda m: m["prefix_cache"]["budget_bytes"]),
    ("prefix_cache_hit_rate", "gauge", "Share of looked-up prompt tokens found in the prefix cache (NaN: "
     "none looked up yet).", lambda m: m["prefix_cache"]["hit_rate"]),
    ("tokens_per_second", "gauge", "Tokens generated per second over the last 10 s.",
     lambda m: m["tokens_per_s"]),
    ("generated_tokens_total", "counter", "Tokens generated.", lambda m: m["generated_tokens_total"]),
    ("forward_passes_total", "counter", "Forward passes run.", lambda m: m["forward_passes_total"]),
    ("prefix_cache_lookup_tokens_total", "counter", "Prompt tokens looked up in the prefix cache.",
     lambda m: m["prefix_cache"]["lookup_tokens"]),
    ("prefix_cache_hit_tokens_total", "counter", "Prompt tokens found in the prefix cache.",
     lambda m: m["prefix_cache"]["hit_tokens"]),
    ("prefix_cache_evicted_blocks_total", "counter", "Prefix cache blocks evicted.",
     lambda m: m["prefix_cache"]["evicted_blocks"]),
    ("speculative_proposed_tokens_total", "counter", "Tokens proposed by speculative decoding.",
     lambda m: m["speculative"]["proposed_total"]),
    ("speculative_accepted_tokens_total", "counter", "Proposed tokens the model accepted.",
     lambda m: m["speculative"]["accepted_total"]),
]
# fmt: on


def exposition(overview: EngineOverview, now: float | None = None) -> str:
    """The whole /metrics body."""
    now = time.time() if now is None else now
    engines = overview.engines
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], Any]]) -> None:
        lines.append(f"# HELP {PREFIX}{name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {PREFIX}{name} {kind}")
        lines.extend(f"{PREFIX}{name}{_labels(labels)} {_value(value)}" for labels, value in samples)

    family(
        "info",
        "gauge",
        "An engine running on a worker, with its device, decode kind and attention kernel (always 1).",
        [({**_engine_labels(m), **_describe(m)}, 1) for m in engines],
    )
    for name, kind, help_text, read in ENGINE_FAMILIES:
        family(name, kind, help_text, [(_engine_labels(m), read(m)) for m in engines])
    family(
        "finished_requests_total",
        "counter",
        "Requests finished, by reason (stop, stop_sequence, length, cancelled, error).",
        [({**_engine_labels(m), "reason": r}, n) for m in engines for r, n in m["finished"].items()],
    )
    family(
        "worker_up",
        "gauge",
        "1 while a web process publishes its engines' snapshot, 0 once it has been silent too long.",
        [({"worker": w.worker}, int(w.live)) for w in overview.workers],
    )
    family(
        "worker_snapshot_age_seconds",
        "gauge",
        "Seconds since a web process last published its engines' snapshot.",
        [({"worker": w.worker}, round(max(0.0, now - w.published), 3)) for w in overview.workers],
    )
    return "\n".join(lines) + "\n"


def _engine_labels(m: dict[str, Any]) -> dict[str, str]:
    return {"model": str(m["model"]), "worker": str(m["worker"])}


def _describe(m: dict[str, Any]) -> dict[str, str]:
    decode, attention = m.get("decode") or {}, m.get("attention") or ""
    if isinstance(attention, dict):  # llmcore.kernels.describe_attention: the setting is its backend
        attention = attention.get("backend", "")
    return {"device": str(m["device"]), "decode": str(decode.get("kind", "")), "attention": str(attention)}


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items()) + "}"


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped, as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: Any) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, bool | int):
        return str(int(value))
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)
