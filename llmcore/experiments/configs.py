"""What each experiment lets a user choose, with its bounds: the one owner of those limits.

Every field carries metadata the Accelerate form is built from: "min"/"max" for a number, "choices" for
a subset (ticked boxes), and "help". `__post_init__` checks the same metadata, so a config built from
anything (a job's stored params, a script) is as bounded as one from the form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcore.errors import UserError
from llmcore.kernels import ATTENTION_BACKENDS

BATCH_SIZES = (1, 2, 4, 8, 16)
DRAFT_LENGTHS = (1, 2, 3, 4, 5, 6, 7, 8)
PREFILL_LENGTHS = (32, 64, 128, 256, 512, 1024, 2048, 4096)  # the cap is 4,096 tokens
MAX_TURNS = 8


class ExperimentError(UserError, ValueError):
    """A parameter out of its bounds; `field` names it, so a form can put the sentence beside it."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def _number(default: int, lo: int, hi: int, help_text: str) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi, "help": help_text})


def _subset(
    default: tuple[Any, ...], choices: tuple[Any, ...], help_text: str, empty_ok: bool = False
) -> Any:
    return field(default=default, metadata={"choices": choices, "help": help_text, "empty_ok": empty_ok})


class Checked:
    """Checks every field against its metadata."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check_value(f, getattr(self, f.name))

    def as_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def check_value(f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    whole = isinstance(value, int) and not isinstance(value, bool)
    if "min" in meta and not (whole and meta["min"] <= value <= meta["max"]):
        raise ExperimentError(f"Choose a whole number from {meta['min']} to {meta['max']}.", f.name)
    if "choices" in meta:
        if not isinstance(value, tuple):
            raise ExperimentError("Choose from the list.", f.name)
        if not value and not meta["empty_ok"]:
            raise ExperimentError("Choose at least one.", f.name)
        bad = [v for v in value if v not in meta["choices"]]
        if bad:
            choices = ", ".join(str(c) for c in meta["choices"])
            raise ExperimentError(f"{bad[0]!r} is not one of {choices}.", f.name)
        if len(set(value)) != len(value):
            raise ExperimentError("Choose each value once.", f.name)


@dataclass(frozen=True)
class BatchingConfig(Checked):
    batch_sizes: tuple[int, ...] = _subset(
        BATCH_SIZES, BATCH_SIZES, "Streams decoded together; each size is one run, with different prompts."
    )
    new_tokens: int = _number(
        64, 32, 256, "Tokens each stream generates (at least 32, so every prompt is in before one ends)."
    )


@dataclass(frozen=True)
class PrefixCacheConfig(Checked):
    turns: int = _number(
        5, 1, MAX_TURNS, "Turns of one conversation; each turn's prompt holds every earlier turn."
    )
    turn_tokens: int = _number(
        160, 16, 512, "About how many tokens each user message adds (fewer when the context is short)."
    )
    new_tokens: int = _number(24, 4, 64, "Tokens of each answer; the next turn's history holds them too.")


@dataclass(frozen=True)
class SpeculativeExperimentConfig(Checked):
    draft_lengths: tuple[int, ...] = _subset(
        (1, 2, 4, 8), DRAFT_LENGTHS, "k: tokens proposed per verification pass; each k is one run."
    )
    new_tokens: int = _number(64, 16, 256, "Tokens of each answer.")
    draft_model: str = field(
        default="",
        metadata={"help": "A second proposer: a catalog model with the same tokenizer (empty: none)."},
    )


@dataclass(frozen=True)
class AttentionConfig(Checked):
    lengths: tuple[int, ...] = _subset(
        (128, 256, 512, 1024), PREFILL_LENGTHS, "Prompt lengths in tokens, each below the model's context."
    )
    backends: tuple[str, ...] = _subset(
        (),
        ATTENTION_BACKENDS,
        "Attention backends to compare (none ticked: every one the worker's device runs).",
        empty_ok=True,
    )
    repeats: int = _number(2, 1, 5, "Prefills per length and backend; the median is plotted.")


@dataclass(frozen=True)
class QualityConfig(Checked):
    """Nothing to choose: the verify reports of the model's quantized children are read as stored."""


EXPERIMENTS: dict[str, tuple[str, type[Checked], str]] = {
    "batching": ("Continuous batching", BatchingConfig, "tokens/s and latency against batch size"),
    "prefix_cache": ("Prefix cache", PrefixCacheConfig, "time to first token against conversation length"),
    "speculative": (
        "Speculative decoding",
        SpeculativeExperimentConfig,
        "acceptance rate and speed-up against draft length, per proposer",
    ),
    "attention": ("Attention kernels", AttentionConfig, "prefill time against prompt length, per backend"),
    "quality": ("Quality vs cost", QualityConfig, "quantized children: size, speed and perplexity"),
}


def config_for(kind: str, params: Mapping[str, Any]) -> Any:
    """The config of an experiment from JSON params (lists become tuples); ExperimentError when bad."""
    if kind not in EXPERIMENTS:
        raise ExperimentError(f"Unknown experiment {kind!r}; choose one of {', '.join(EXPERIMENTS)}.", "kind")
    cls = EXPERIMENTS[kind][1]
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in known}
    return cls(**values)


def kind_of(config: Any) -> str:
    return next(kind for kind, (_, cls, _) in EXPERIMENTS.items() if type(config) is cls)
