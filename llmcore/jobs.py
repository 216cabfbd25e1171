"""What a long-running model job (fine-tune, distill, quantize) sees of whoever runs it.

llmcore never knows about Celery or the ORM (tests/llmcore/test_framework_free.py keeps it so): the Celery
task builds a `JobContext` whose callbacks write to the Job row, and passes it to
`llmcore.finetune.run_finetune` or `llmcore.quantize.run_quantize`. Those call `ctx.report(...)` as they
go and `ctx.check_cancelled()` between steps; a cancelled job raises `JobCancelled` out of the runner,
which leaves no half-written model behind.

Tests and benchmarks use `JobContext()` directly: no callbacks, nothing cancelled, work_dir a temp folder.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class JobCancelled(Exception):
    """Raised by `JobContext.check_cancelled` when the user cancelled the job."""


class JobFailed(Exception):
    """A failure whose message is for the user (bad dataset, out of memory with advice...)."""


def training_out_of_memory(device: str) -> str:
    """What to do when training ran out of memory on `device`: the one wording, for the trainer and for
    the job runner that catches what the trainer did not."""
    return (
        f"Out of memory on {device}. Try a smaller batch size (with more gradient accumulation to keep the "
        "effective batch), a shorter max sequence length, LoRA or QLoRA instead of full fine-tuning, or a "
        "worker with more memory."
    )


@dataclass(frozen=True)
class Measure:
    """What one number (or name) of a job's report is, written beside the code that reports it, so a page
    shows a label and a unit, never the key. A measure one side can win (`better` "lower" or "higher")
    says how a change reads: `words` (better, worse, about the same), as a ratio ("2.0x smaller") or, with
    `as_ratio` False, in percent ("0.6 % higher"); `phrase` puts the change in a sentence."""

    label: str
    unit: str = ""  # "bytes", "s", "tokens", "tokens/s", "nats", "nats/token", "share" (0-1), or ""
    better: str = ""  # "lower", "higher", or "" for a fact (a dtype, a kernel)
    words: tuple[str, str, str] = ("better", "worse", "about the same")
    as_ratio: bool = True
    phrase: str = "{}"


@dataclass(frozen=True)
class Change:
    """How one measure moved from the parent to the child: `value` the ratio (over 1: better) or percent
    change, `direction` 1 better, -1 worse, 0 about the same, and the words."""

    value: float
    direction: int
    text: str


def change(measure: Measure, before: Any, after: Any) -> Change | None:
    """`before` (the parent's) to `after` (the child's), by `measure`; None when it cannot be said (a fact,
    a missing or non-positive number). About the same: within 5 % (a ratio) or 0.05 points (percent)."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in (before, after))
    if not measure.better or not numbers:
        return None
    good, bad, same = measure.words
    if measure.as_ratio:
        gain = before / after if measure.better == "lower" else after / before
        if gain >= 1.05:
            return Change(gain, 1, f"{gain:.1f}x {good}")
        if gain <= 1 / 1.05:
            return Change(gain, -1, f"{1 / gain:.1f}x {bad}")
        return Change(gain, 0, same)
    pct = 100.0 * (after / before - 1.0)
    if abs(pct) < 0.05:
        return Change(pct, 0, same)
    up = (pct > 0) == (measure.better == "higher")
    return Change(pct, 1 if up else -1, f"{abs(pct):.1f} % {good if up else bad}")


@dataclass
class Update:
    """One progress report. Every field is optional but `step`/`total` (0/0 when unknown)."""

    step: int = 0
    total: int = 0
    phase: str = ""  # "loading", "training", "evaluating", "saving", "verifying"...
    metrics: dict[str, float] = field(
        default_factory=dict
    )  # e.g. {"loss": 2.1, "lr": 1e-4, "tokens_per_s": 900}
    log: str | None = None  # one line for the log tail
    sample: dict[str, Any] | None = None  # {"step": n, "prompt": str, "output": str}
    time: float = field(default_factory=time.time)


@dataclass
class JobContext:
    """Callbacks and places for one job run.

    work_dir: the job's own folder (checkpoints live in work_dir / "checkpoints"; a resumed run finds them
    there). device: "cuda", "mps" or "cpu" (the runner moves models there). seed: for reproducibility.
    """

    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="llmcore-job-")))
    device: str = "cpu"
    on_update: Callable[[Update], None] | None = None
    is_cancelled: Callable[[], bool] | None = None
    seed: int = 0

    def report(self, update: Update) -> None:
        if self.on_update is not None:
            self.on_update(update)

    def log(self, line: str) -> None:
        self.report(Update(log=line))

    def check_cancelled(self) -> None:
        if self.is_cancelled is not None and self.is_cancelled():
            raise JobCancelled("Cancelled by the user.")

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"
