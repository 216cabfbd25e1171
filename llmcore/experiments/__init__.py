"""Engine experiments: what batching, the prefix cache, speculative decoding, attention kernels and
quantization do, measured on demand, on one model, by its own engine.

Five experiments, each a config dataclass (`configs`) whose fields carry their bounds and help as
metadata (the Accelerate page's form is built from them) and a function that returns JSON-able series:

- `BatchingConfig` (`batching`): aggregate tokens/s, per-stream decode tokens/s and latency
  against batch size;
- `PrefixCacheConfig` (`prefix_cache`): time to first token against conversation length, with
  the prefix cache and without;
- `SpeculativeExperimentConfig` (`speculative`): acceptance rate and speed-up against draft
  length k, per proposer, on a prompt whose answer copies from it (what prompt lookup is made for);
- `AttentionConfig` (`attention`): prefill time against prompt length per attention backend;
- `QualityConfig` (`quality`): no new measurement; the verify reports that quantize jobs stored
  for a model's children, as size, speed and perplexity of each against its parent.

Every number comes from real requests through llmcore.engine (greedy, run to `new_tokens`). A result is
{"kind", "model", "device", "config", "seconds", "engine", "charts", "table", "summary", "notes"}; a
chart is {"id", "title", "x": {"label", "scale"}, "y": {"label"}, "mode", "series": [{"name",
"points": [[x, y], ...]}]}. Progress and cancellation go through a llmcore.jobs.JobContext, checked
between requests and between tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llmcore.experiments.attention import attention_sweep
from llmcore.experiments.batching import batching_sweep
from llmcore.experiments.configs import (
    BATCH_SIZES,
    DRAFT_LENGTHS,
    EXPERIMENTS,
    PREFILL_LENGTHS,
    AttentionConfig,
    BatchingConfig,
    ExperimentError,
    PrefixCacheConfig,
    QualityConfig,
    SpeculativeExperimentConfig,
    config_for,
    kind_of,
)
from llmcore.experiments.prefix_cache import prefix_cache_sweep
from llmcore.experiments.quality import quality_tradeoff
from llmcore.experiments.speculative import speculative_sweep
from llmcore.jobs import JobContext, JobFailed
from llmcore.loading import LoadedModel

__all__ = [
    "BATCH_SIZES",
    "DRAFT_LENGTHS",
    "EXPERIMENTS",
    "PREFILL_LENGTHS",
    "AttentionConfig",
    "BatchingConfig",
    "ExperimentError",
    "PrefixCacheConfig",
    "QualityConfig",
    "SpeculativeExperimentConfig",
    "config_for",
    "kind_of",
    "overlay",
    "quality_tradeoff",
    "run_experiment",
]

_SWEEPS: dict[type, Callable[..., dict[str, Any]]] = {
    BatchingConfig: batching_sweep,
    PrefixCacheConfig: prefix_cache_sweep,
    SpeculativeExperimentConfig: speculative_sweep,
    AttentionConfig: attention_sweep,
}


def run_experiment(
    loaded: LoadedModel,
    config: Any,
    ctx: JobContext | None = None,
    *,
    engine_options: Mapping[str, Any] | None = None,
    drafts: Callable[[str], LoadedModel] | None = None,
) -> dict[str, Any]:
    """Run one experiment on `loaded` (QualityConfig measures nothing: see quality_tradeoff).

    `engine_options`: the Engine's packed_decode and threads, as the site's engines use them; `drafts`
    loads a draft model by catalog name (speculative decoding with a draft model)."""
    sweep = _SWEEPS.get(type(config))
    if sweep is None:
        raise ExperimentError(f"{type(config).__name__} is not measured on a loaded model.")
    if not loaded.is_causal:
        raise JobFailed(f"{loaded.name} is an encoder: it does not generate text, so it has no engine.")
    options = dict(engine_options or {})
    if isinstance(config, SpeculativeExperimentConfig):
        options["drafts"] = drafts
    started = time.perf_counter()
    result = sweep(loaded, config, ctx or JobContext(), options)
    return {
        "kind": kind_of(config),
        "model": loaded.name,
        "device": str(loaded.device),
        "config": config.as_json(),
        "seconds": round(time.perf_counter() - started, 2),
        **result,
    }


def overlay(results: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The charts of results of one kind drawn together, chart by chart: each series named after its
    result's label ("#12 aggregate") and tagged with the result's place in `results` (`group`)."""
    if len({r.get("kind") for _, r in results}) != 1:
        raise ExperimentError("Only experiments of the same kind can be drawn together.")
    charts: dict[str, dict[str, Any]] = {}
    for group, (label, result) in enumerate(results):
        for chart in result.get("charts", []):
            merged = charts.setdefault(chart["id"], {**chart, "series": []})
            for series in chart["series"]:
                merged["series"].append({**series, "name": f"{label} {series['name']}", "group": group})
    return list(charts.values())
