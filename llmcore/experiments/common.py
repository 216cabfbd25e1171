"""What every experiment shares: greedy requests, reading streams under cancellation, progress, charts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmcore.encoding import encode_text
from llmcore.engine import DoneEvent, Engine, GenerationRequest, GenerationStream, StatsEvent, TokenEvent
from llmcore.jobs import JobContext, JobFailed, Update
from llmcore.loading import LoadedModel
from llmcore.sampling import SamplingConfig

Messages = Sequence[Mapping[str, str]]


@dataclass
class Outcome:
    """One request's result: tokens generated, the engine's stats, the answer's text."""

    tokens: int
    stats: StatsEvent
    text: str


def greedy(
    loaded: LoadedModel, prompt: str | Messages | list[int], new_tokens: int, **kw: Any
) -> GenerationRequest:
    """A greedy request that runs to `new_tokens`. `prompt`: a user message, a conversation, or token
    ids; a model without a chat template reads the messages' text one after another."""
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    source: dict[str, Any]
    if prompt and isinstance(prompt[0], int):
        source = {"prompt_ids": [int(i) for i in prompt]}  # type: ignore[arg-type]
    elif loaded.has_chat_template:
        source = {"messages": [dict(m) for m in prompt]}  # type: ignore[arg-type]
    else:
        source = {"prompt_ids": _plain_ids(loaded, prompt)}  # type: ignore[arg-type]
    return GenerationRequest(
        **source,
        sampling=SamplingConfig(temperature=0),
        max_new_tokens=new_tokens,
        ignore_stop_tokens=True,
        top_alternatives=0,
        seed=0,
        **kw,
    )


def _plain_ids(loaded: LoadedModel, messages: Messages) -> list[int]:
    return encode_text(loaded.tokenizer, "\n\n".join(m["content"] for m in messages))


def prompt_tokens(loaded: LoadedModel, messages: Messages) -> int:
    """The length of the prompt `greedy` sends for these messages."""
    if loaded.has_chat_template:
        return len(loaded.encode_chat([dict(m) for m in messages]))
    return len(_plain_ids(loaded, messages))


def words_to_fit(tokenizer: Any, words: Sequence[str], budget: int) -> str:
    """The longest start of `words` whose text takes at most `budget` tokens (at least one word)."""
    lo, hi = 1, len(words)
    while lo < hi:  # the token count grows with the words: bisect
        mid = (lo + hi + 1) // 2
        if len(encode_text(tokenizer, " ".join(words[:mid]), add_special_tokens=False)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def collect(streams: Sequence[GenerationStream], ctx: JobContext) -> list[Outcome]:
    """Every stream's outcome, in order. A cancelled job cancels the streams still running, then
    raises JobCancelled; a request that fails fails the experiment (JobFailed)."""
    out: list[Outcome] = []
    try:
        for stream in streams:
            tokens, stats = 0, None
            for event in stream:
                if isinstance(event, TokenEvent):
                    tokens += 1
                    ctx.check_cancelled()
                elif isinstance(event, StatsEvent):
                    stats = event
                elif isinstance(event, DoneEvent):
                    if event.reason == "error" or stats is None:
                        raise JobFailed(f"A request of the experiment failed: {event.error}")
                    out.append(Outcome(tokens, stats, event.text))
    except BaseException:
        for stream in streams:
            stream.cancel()
        raise
    return out


def run_one(engine: Engine, request: GenerationRequest, ctx: JobContext) -> tuple[Outcome, float]:
    """One request alone, and its wall time from submit to its last event."""
    started = time.perf_counter()
    outcome = collect([engine.submit(request)], ctx)[0]
    return outcome, time.perf_counter() - started


def warm_engine(loaded: LoadedModel, options: Mapping[str, Any], **kw: Any) -> Engine:
    """An engine for this experiment alone, warmed up (the first passes pay for allocations)."""
    engine = Engine(loaded, **{**options, **kw})
    engine.generate(greedy(loaded, "Hi", 2))
    return engine


def progress(ctx: JobContext, step: int, total: int, line: str, **metrics: float | None) -> None:
    ctx.check_cancelled()
    numbers = {k: float(v) for k, v in metrics.items() if v is not None}
    ctx.report(Update(step=step, total=total, phase="measuring", log=line, metrics=numbers))


def rnd(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def ms(seconds: float | None, digits: int = 1) -> float | None:
    return None if seconds is None else round(1000 * seconds, digits)


def chart(
    chart_id: str,
    title: str,
    x: str,
    y: str,
    series: list[dict[str, Any]],
    scale: str = "linear",
    mode: str = "lines",
) -> dict[str, Any]:
    """A chart for static/accelerate/accelerate.js: `scale` "log2" spaces 1, 2, 4... evenly; `mode`
    "points" draws unconnected points (one model each)."""
    return {
        "id": chart_id,
        "title": title,
        "x": {"label": x, "scale": scale},
        "y": {"label": y},
        "mode": mode,
        "series": series,
    }


def series(name: str, points: Iterable[tuple[float | None, float | None]]) -> dict[str, Any]:
    return {"name": name, "points": [[x, y] for x, y in points if x is not None and y is not None]}


def column(rows: Sequence[Mapping[str, Any]], x: str, y: str, **where: Any) -> list[tuple[Any, Any]]:
    """(row[x], row[y]) of the rows whose fields equal `where`."""
    return [(r[x], r[y]) for r in rows if all(r.get(k) == v for k, v in where.items())]
