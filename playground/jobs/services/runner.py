"""What a Celery task does with a job id: claim the row, run llmcore with a JobContext whose callbacks write
to the row (throttled), register the result in the catalog with its lineage, and leave nothing half-made.

The job's folder is DATA_DIR/jobs/<id>/: checkpoints/ survives between attempts (a resumed fine-tune
continues from it); the output is written to a fresh out-<attempt>/ folder there, imported into the store
atomically on success, and removed whatever happens.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from llmcore.jobs import JobCancelled, JobContext, JobFailed, Update, training_out_of_memory
from llmcore.loading import best_device
from playground.catalog.services import owner_extra, sync_catalog
from playground.core.services import model_store
from playground.jobs.models import Job
from playground.jobs.services.adding import add_model
from playground.jobs.services.datasets import parsed_dataset
from playground.jobs.services.jobs import mark_lost

log = logging.getLogger(__name__)
WRITE_SECONDS = 1.0  # the most often progress is written to the row
CANCEL_POLL_SECONDS = 1.0  # the most often the runner reads cancel_requested
MAX_POINTS = 2000  # metric points kept; older ones are thinned out two to one
MAX_SAMPLES = 40
MAX_LOG_LINES = 200


# --- claiming ---------------------------------------------------------------------------------------
def claim(job_id: int, task_id: str | None, hostname: str, device: str) -> Job | None:
    """Take the job for this message, or None when there is nothing to do.

    A queued job whose task id matches is started. A running one with the same task id is a message
    redelivered after its worker died (acks_late + reject_on_worker_lost): it starts again (resuming from
    checkpoints) until JOB_MAX_ATTEMPTS, then fails with "worker lost". Anything else (cancelled, failed,
    finished, or a message the row no longer expects) is left alone.
    """
    now = timezone.now()
    fields = {"worker": hostname, "device": device, "heartbeat": now, "phase": "starting"}
    job = Job.objects.filter(pk=job_id).first()
    if job is None or (task_id and job.task_id and task_id != job.task_id):
        return None
    if job.status == Job.Status.QUEUED:
        taken = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED, task_id=job.task_id).update(
            status=Job.Status.RUNNING, started=now, attempt=job.attempt + 1, **fields
        )
    elif job.status == Job.Status.RUNNING:
        if job.attempt >= settings.JOB_MAX_ATTEMPTS:
            mark_lost(job)
            return None
        taken = Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, attempt=job.attempt).update(
            attempt=job.attempt + 1, **fields
        )
    else:
        return None
    return Job.objects.get(pk=job_id) if taken else None


# --- progress ---------------------------------------------------------------------------------------
class RowWriter:
    """The JobContext callbacks: keep progress in memory, write it to the row at most once a second."""

    def __init__(self, job: Job) -> None:
        self.job_id = job.pk
        self.task_id = job.task_id
        self.metrics: list[dict[str, Any]] = list(job.metrics)
        self.samples: list[dict[str, Any]] = list(job.samples)
        self.log_tail: list[str] = list(job.log_tail)
        self.state: dict[str, Any] = {}
        self.started = time.monotonic()
        self.first_step: tuple[int, float] | None = None
        self.last_write = 0.0
        self.last_poll = 0.0
        self.cancelled = False
        self.lock = threading.Lock()

    def update(self, u: Update) -> None:
        with self.lock:
            important = False
            if u.phase and u.phase != self.state.get("phase"):
                self.state["phase"] = u.phase[:40]
                important = True
            if u.total:
                self.state.update(step=u.step, total=u.total, eta_seconds=self._eta(u.step, u.total))
            if u.metrics:
                point = {"step": u.step, "t": round(time.monotonic() - self.started, 2)}
                point.update({k: float(v) for k, v in u.metrics.items() if isinstance(v, int | float)})
                self.metrics.append(point)
                if len(self.metrics) > MAX_POINTS:
                    self.metrics = self.metrics[::2]
            if u.log:
                self.log_tail = (self.log_tail + [line[:500] for line in u.log.splitlines()])[-MAX_LOG_LINES:]
            if u.sample:
                self.samples = (self.samples + [_sample(u.sample, u.step)])[-MAX_SAMPLES:]
                important = True
            if important or time.monotonic() - self.last_write >= WRITE_SECONDS:
                self.flush()

    def _eta(self, step: int, total: int) -> int | None:
        now = time.monotonic()
        if self.first_step is None or step < self.first_step[0]:
            self.first_step = (step, now)
            return None
        done, since = step - self.first_step[0], now - self.first_step[1]
        return int((total - step) * since / done) if done > 0 and since > 0 else None

    def flush(self, **extra: Any) -> None:
        self.last_write = time.monotonic()
        fields = {"metrics": self.metrics, "samples": self.samples, "log_tail": self.log_tail}
        fields.update(self.state, heartbeat=timezone.now(), **extra)
        # Only while the row still expects this run's message: after a resume it belongs to another run.
        Job.objects.filter(pk=self.job_id, task_id=self.task_id).update(**fields)

    def finish(self, status: str, **fields: Any) -> str:
        """Write the run's end: `status`, when, and no phase or ETA left (with `fields`); returns `status`."""
        fields.setdefault("eta_seconds", None)
        self.state.pop("eta_seconds", None)
        self.flush(status=status, finished=timezone.now(), phase="", **fields)
        return status

    def crashed(self, exc: BaseException) -> str:
        """FAILED with an exception nobody foresaw as the error, the last lines of its traceback added to
        the log. Call it in the `except` block that caught `exc` (after logging it)."""
        self.log_tail = (self.log_tail + traceback.format_exc().splitlines()[-12:])[-MAX_LOG_LINES:]
        return self.finish(Job.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])

    def is_cancelled(self) -> bool:
        if not self.cancelled and time.monotonic() - self.last_poll >= CANCEL_POLL_SECONDS:
            self.last_poll = time.monotonic()
            self.cancelled = Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self.cancelled


def _sample(sample: dict[str, Any], step: int) -> dict[str, Any]:
    return {
        "step": int(sample.get("step", step)),
        "prompt": str(sample.get("prompt", ""))[:2000],
        "output": str(sample.get("output", ""))[:4000],
    }


class Heartbeat:
    """Touches the row every JOB_HEARTBEAT_SECONDS while the job runs, even through long silent steps
    (loading a model, saving): a stale heartbeat then means the worker is really gone."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, name=f"job-{job_id}-heartbeat", daemon=True)

    def loop(self) -> None:
        while not self.stop.wait(settings.JOB_HEARTBEAT_SECONDS):
            try:
                Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(heartbeat=timezone.now())
            except Exception:
                log.exception("job heartbeat failed")
        close_old_connections()

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def job_context(job: Job, device: str, writer: RowWriter) -> JobContext:
    """What llmcore sees of a claimed job: its folder, device and seed, progress and cancel on the row."""
    return JobContext(
        work_dir=job.work_dir,
        device=device,
        on_update=writer.update,
        is_cancelled=writer.is_cancelled,
        seed=int(job.params.get("seed") or 0),
    )


# --- jobs that make no model -----------------------------------------------------------------------
def run_report_job(
    job_id: int,
    task_id: str | None,
    hostname: str,
    body: Callable[[Job, JobContext], dict[str, Any]],
    *,
    failures: tuple[type[BaseException], ...] = (),
    what: str = "The job",
    oom_advice: str = "",
) -> str:
    """The body of a task whose job makes no model (an experiment, an evaluation run): claim the row, run
    `body(job, ctx)` under the heartbeat, keep what it returns as the job's report; the final status.
    `failures`: the errors whose message is for the user (beside JobFailed); `oom_advice` follows "Out
    of memory on <device>:"."""
    device = best_device(settings.MODEL_DEVICE).type
    job = claim(job_id, task_id, hostname, device)
    if job is None:
        return "skipped"
    writer = RowWriter(job)
    ctx = job_context(job, device, writer)
    ctx.log(f"attempt {job.attempt} on {hostname} ({device}): {job.method} on {job.base_model}")
    out_of_memory = f"Out of memory on {device}: {oom_advice}".strip()
    for_the_user: tuple[type[BaseException], ...] = (JobFailed, *failures)
    try:
        with Heartbeat(job.pk):
            result = body(job, ctx)
        return writer.finish(Job.Status.SUCCEEDED, report=_jsonable(result))
    except JobCancelled:
        return writer.finish(Job.Status.CANCELLED, error="Cancelled by the user.")
    except for_the_user as exc:
        return writer.finish(Job.Status.FAILED, error=str(exc) or f"{what} failed.")
    except MemoryError:
        return writer.finish(Job.Status.FAILED, error=out_of_memory)
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA)
            return writer.finish(Job.Status.FAILED, error=out_of_memory)
        log.exception("job %s failed", job.pk)
        return writer.crashed(exc)
    finally:
        _free_memory()


# --- running ----------------------------------------------------------------------------------------
def run_job(job_id: int, task_id: str | None, hostname: str) -> str:
    """The body of run_job_task; returns the job's final status."""
    device = best_device(settings.MODEL_DEVICE).type
    job = claim(job_id, task_id, hostname, device)
    if job is None:
        return "skipped"
    writer = RowWriter(job)
    job.work_dir.mkdir(parents=True, exist_ok=True)
    out_dir = job.work_dir / f"out-{job.attempt}"
    shutil.rmtree(out_dir, ignore_errors=True)
    ctx = job_context(job, device, writer)
    ctx.log(f"attempt {job.attempt} on {hostname} ({device})")
    try:
        with Heartbeat(job.pk):
            if job.adds_model:  # a pull or import: the store writes the model itself
                report = add_model(job, ctx)
            else:
                report, extra = _run(job, out_dir, ctx)
                ctx.check_cancelled()
                writer.update(Update(phase="registering", log=f"adding {job.output_name} to the catalog"))
                _register(job, out_dir, report, extra)
        # A finished job is never resumed: its checkpoints (optimizer state included) only take disk.
        for leftover in ("checkpoints", "student"):
            shutil.rmtree(job.work_dir / leftover, ignore_errors=True)
        return writer.finish(Job.Status.SUCCEEDED, report=report, output_model=job.output_name)
    except JobCancelled:
        return writer.finish(Job.Status.CANCELLED, error="Cancelled by the user.")
    except JobFailed as exc:
        return writer.finish(Job.Status.FAILED, error=str(exc) or "The job failed.")
    except MemoryError:
        return writer.finish(Job.Status.FAILED, error=training_out_of_memory(device))
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA)
            return writer.finish(Job.Status.FAILED, error=training_out_of_memory(device))
        if type(exc).__name__ == "SoftTimeLimitExceeded":
            error = f"Stopped at the time limit ({settings.JOB_TIME_LIMIT} s). Resume it to continue."
            return writer.finish(Job.Status.FAILED, error=error)
        log.exception("job %s failed", job.pk)
        return writer.crashed(exc)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(out_dir.with_name(out_dir.name + ".partial"), ignore_errors=True)
        _free_memory()


def _run(job: Job, out_dir: Path, ctx: JobContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the llmcore side; returns (report for the job page, extra facts for the catalog)."""
    store = model_store()
    if not store.exists(job.base_model):
        raise JobFailed(f"The base model {job.base_model!r} is no longer in the catalog.")
    base_dir = store.path(job.base_model)
    if job.kind == Job.Kind.QUANTIZE:
        from llmcore import quantize

        config = quantize.QuantizeConfig(method=job.method, group_size=job.params.get("group_size"))
        # run_quantize checks the config against this worker's device first (JobFailed with the reasons).
        result = quantize.run_quantize(base_dir, out_dir, config, ctx)
        ctx.check_cancelled()
        ctx.report(Update(phase="verifying", log="comparing the quantized model with its parent"))
        try:
            report = quantize.verify(base_dir, out_dir, ctx)
        except (JobCancelled, MemoryError):
            raise
        except Exception as exc:  # the model is sound; only the measurement failed: keep it, say so
            if type(exc).__name__ == "OutOfMemoryError":
                raise
            log.exception("verify of job %s failed", job.pk)
            report = {"summary": f"The quantized model was written, but measuring it failed: {exc}"[:500]}
        notes = list(result.notes or [])
        extra = {"quantize_report": _jsonable(report), "notes": notes, **_jsonable(dict(result.extra or {}))}
        return _jsonable(report), extra
    from llmcore import finetune

    if job.dataset is None:
        raise JobFailed("The dataset of this job was deleted.")
    parsed = parsed_dataset(job.dataset)
    config = finetune_config(job.method, job.params, base_dir)
    # run_finetune checks the config and dataset against this worker's device first (JobFailed).
    trained = finetune.run_finetune(config, parsed, out_dir, ctx)
    metrics = _jsonable(dict(trained.metrics))
    return metrics, {"final_metrics": metrics}


# The job param that names a distillation's teacher by catalog name (FinetuneConfig.teacher_dir is its
# folder).
TEACHER = "teacher_model"


def finetune_config(method: str, job_params: dict[str, Any], base_dir: Path) -> Any:
    """A FinetuneConfig from a job's params (those the dataclass knows; None keeps its default)."""
    from dataclasses import fields

    from llmcore import finetune

    known = {f.name for f in fields(finetune.FinetuneConfig)}
    params = {k: v for k, v in job_params.items() if k in known and v is not None}
    params.update(method=method, base_dir=base_dir)
    if params.get("target_modules"):
        params["target_modules"] = tuple(params["target_modules"])
    teacher = job_params.get(TEACHER)
    if teacher:
        params["teacher_dir"] = model_store().path(teacher)
    return finetune.FinetuneConfig(**params)


def _register(job: Job, out_dir: Path, report: dict[str, Any], extra: dict[str, Any]) -> None:
    lineage = {
        **owner_extra(job.owner),  # the job owner's model, private to them until they share it
        "job": job.pk,
        "kind": job.kind,
        "dataset": job.dataset.name if job.dataset else None,
        "dataset_rows": job.dataset.rows if job.dataset else None,
        "hyperparameters": job.chosen_params,
        "description": f"{job.get_kind_display()} of {job.base_model} with {job.method} (job {job.pk}).",
        **extra,
    }
    model_store().import_folder(
        out_dir,
        job.output_name,
        parent=job.base_model,
        method=job.method,
        source_label=f"job {job.pk}: {job.kind} {job.method} of {job.base_model}",
        license=_parent_license(job.base_model),
        extra=_jsonable(lineage),
    )
    sync_catalog(fresh=True)


def _parent_license(name: str) -> str:
    try:
        return model_store().meta(name).license
    except Exception:
        return "unknown"


def _jsonable(value: Any) -> Any:
    """Reports hold floats, ints, strings, lists and dicts; anything else (a Path, a numpy float)
    becomes a number or a string so the row's JSON field accepts it."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass
