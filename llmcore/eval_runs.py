"""Evaluation runs: every item of a suite answered by a model through its engine, then scored by the suite's
metrics (llmcore.eval_metrics), framework-free.

`answer_items` submits the items' inputs as user messages (through the model's chat template; a model
without one reads the input as plain text) to an `Engine` with the run's sampler settings and seed, keeping
at most `window` requests in the engine at once so a long suite never overflows its waiting queue while the
batch stays full. It checks cancellation between tokens and reports each finished item. `score_run` turns
one model's answers into the run's summary for that model (each metric's value and interval, per-tag
scores, accuracy's confusion matrix, the checks' pass rates) and every item's scores.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmcore import eval_metrics
from llmcore.encoding import encode_text
from llmcore.engine import DoneEvent, Engine, GenerationRequest, GenerationStream, TokenEvent
from llmcore.jobs import JobContext
from llmcore.loading import LoadedModel
from llmcore.sampling import SamplingConfig

DEFAULT_MAX_NEW_TOKENS = 64  # short answers: the shipped suites ask for a word, a label or a sentence
DEFAULT_TEMPERATURE = 0.0  # greedy: a run says what the model answers, not one draw of it


@dataclass(frozen=True)
class RunItem:
    """What scoring needs of one suite item."""

    input: str
    references: Sequence[str] = ()
    tags: Sequence[str] = ()
    checks: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Answer:
    """One item's answer: its text, tokens generated, and the engine's error when the request failed
    (a prompt longer than the model's context, say): the item then counts as answered with ""."""

    text: str
    tokens: int = 0
    error: str = ""


@dataclass(frozen=True)
class RunSettings:
    """The sampler settings every model of a run answers with."""

    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = 1.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    seed: int = 0
    sampling: SamplingConfig = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sampling", SamplingConfig(temperature=self.temperature, top_p=self.top_p))

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("temperature", "top_p", "max_new_tokens", "seed")}


def request_for(loaded: LoadedModel, text: str, settings: RunSettings) -> GenerationRequest:
    """The request answering `text` as a user message."""
    source: dict[str, Any]
    if loaded.has_chat_template:
        source = {"messages": [{"role": "user", "content": text}]}
    else:
        source = {"prompt_ids": encode_text(loaded.tokenizer, text)}
    return GenerationRequest(
        **source,
        sampling=settings.sampling,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
        top_alternatives=0,
    )


def _read(stream: GenerationStream, ctx: JobContext) -> Answer:
    tokens = 0
    for event in stream:
        if isinstance(event, TokenEvent):
            tokens += 1
            ctx.check_cancelled()
        elif isinstance(event, DoneEvent):
            if event.reason == "error":
                return Answer("", tokens, str(event.error or "the request failed")[:500])
            return Answer(event.text, tokens)
    return Answer("", tokens, "the stream ended without an answer")


def answer_items(
    engine: Engine,
    inputs: Sequence[str],
    settings: RunSettings,
    ctx: JobContext,
    on_answer: Callable[[int, Answer], None] | None = None,
    window: int | None = None,
) -> list[Answer]:
    """Every input's answer, in order. Requests go to the engine `window` at a time (by default twice what
    it decodes together, within what it lets wait), a new one as each finishes; a cancelled job cancels
    those in flight and raises JobCancelled. `on_answer(index, answer)` is called as each lands."""
    size = window or min(2 * engine.limits.max_sequences, engine.limits.max_waiting)
    pending = iter(enumerate(inputs))
    flight: deque[tuple[int, GenerationStream]] = deque()
    answers: list[Answer] = []
    try:
        while True:
            while len(flight) < size and (nxt := next(pending, None)) is not None:
                flight.append((nxt[0], engine.submit(request_for(engine.loaded, nxt[1], settings))))
            if not flight:
                return answers
            index, stream = flight.popleft()
            answers.append(_read(stream, ctx))
            if on_answer is not None:
                on_answer(index, answers[-1])
    except BaseException:
        for _, stream in flight:
            stream.cancel()
        raise


# --- scoring -----------------------------------------------------------------------------------------
@dataclass
class ModelScores:
    """One model's scores: `summary` by metric name ({"value", "low", "high", "n", "by_tag", and
    "confusion" for accuracy, "per_check" for checks, "parts" for rouge's three}) and, per item, each
    metric's score (None where the item was not scored by it)."""

    summary: dict[str, dict[str, Any]]
    per_item: list[dict[str, float | None]]


def score_run(
    metrics: Sequence[str],
    items: Sequence[RunItem],
    outputs: Sequence[str],
    labels: Sequence[str] = (),
    seed: int = 0,
) -> ModelScores:
    """Score one model's outputs with each metric of the suite (bootstrap intervals seeded by `seed`)."""
    references = [list(item.references) for item in items]
    opts: dict[str, Any] = {"tags": [list(item.tags) for item in items], "seed": seed}
    summary: dict[str, dict[str, Any]] = {}
    per_item: list[dict[str, float | None]] = [{} for _ in items]
    for name in metrics:
        extra: dict[str, Any] = {"labels": list(labels)} if name == "accuracy" else {}
        if name == "checks":
            extra = {"checks": [[dict(c) for c in item.checks] for item in items]}
        result = eval_metrics.score(name, outputs, references, **opts, **extra)
        summary[name] = _summary_of(result)
        for row, value in zip(per_item, result.per_item, strict=True):
            row[name] = value
    return ModelScores(summary, per_item)


def _summary_of(result: eval_metrics.MetricResult) -> dict[str, Any]:
    details = result.details
    out: dict[str, Any] = {
        "value": result.value,
        "low": result.low,
        "high": result.high,
        "n": details.get("n"),
        "by_tag": details.get("by_tag", {}),
    }
    if "confusion" in details:
        out["confusion"] = details["confusion"]
    if "per_check" in details:
        out["per_check"] = details["per_check"]
    parts = {t: details[t] for t in eval_metrics.ROUGE_TYPES if t in details}
    if parts:
        out["parts"] = {t: {k: p.get(k) for k in ("value", "low", "high")} for t, p in parts.items()}
        out["n"], out["by_tag"] = parts["rougeL"].get("n"), parts["rougeL"].get("by_tag", {})
    return out


def normalized(text: str) -> str:
    """An output as the metrics compare it (SQuAD's normalization): for telling answers apart."""
    return eval_metrics.normalize_answer(text)


def disagree(outputs: Sequence[str], correct: Sequence[float | None]) -> bool:
    """Whether the models' answers to one item differ: in correctness (exact match or accuracy, where the
    item is scored) or in their normalized text."""
    scored = {c for c in correct if c is not None}
    return len(scored) > 1 or len({normalized(o) for o in outputs}) > 1
