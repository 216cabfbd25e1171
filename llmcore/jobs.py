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
