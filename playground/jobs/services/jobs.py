"""Creating, routing, cancelling, resuming and reaping jobs. The Job row is the source of truth; Celery
messages carry only the job id, and the row remembers which message (task_id) may run it, so a stale or
redelivered message of a job that moved on does nothing. That also makes a lost message safe to send
again: the re-sent message gets a new task id, and a late original finds the row expecting another."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from llmcore.store import StoreError, name_from, validate_name
from playground.catalog.services import RESERVED_NAMES, name_taken
from playground.celery import app
from playground.core.models import WorkerHeartbeat
from playground.core.services import PlaygroundError, model_store
from playground.core.workers import GPU_DEVICES
from playground.jobs.models import Dataset, Job

log = logging.getLogger(__name__)
# The Celery task that runs each kind of job (defined in playground/jobs/tasks.py under these names;
# experiments and evaluation runs in their apps' tasks.py). Quantize, fine-tune, pull and import jobs
# share one task: the Job row says what to run.
TASK_NAMES = {
    Job.Kind.QUANTIZE: "jobs.run_job_task",
    Job.Kind.FINETUNE: "jobs.run_job_task",
    Job.Kind.ACCELERATE: "accelerate.run_experiment_task",
    Job.Kind.EVALUATE: "evaluate.run_evaluation_task",  # playground/evaluate/tasks.py
    Job.Kind.PULL: "jobs.run_job_task",  # services/adding.py
    Job.Kind.IMPORT: "jobs.run_job_task",
}


class JobError(PlaygroundError):
    """A job cannot be created, cancelled or resumed; the message is for the user."""


# --- workers and routing ----------------------------------------------------------------------------
def live_devices() -> list[str]:
    """The devices of the workers alive now (one entry per device type)."""
    return sorted({w.device for w in WorkerHeartbeat.objects.live()})


def gpu_worker_alive() -> bool:
    return any(w.device in GPU_DEVICES and "gpu" in (w.queues or []) for w in WorkerHeartbeat.objects.live())


def choose_queue(devices_ok: list[str] | None = None) -> str:
    """`gpu` when a GPU worker is alive (and the job can run there), else `cpu`."""
    if gpu_worker_alive() and (devices_ok is None or any(d in GPU_DEVICES for d in devices_ok)):
        return "gpu"
    return "cpu"


# --- creating ---------------------------------------------------------------------------------------
def output_name_for(base: str, method: str, requested: str = "") -> str:
    """The catalog name of a job's result: the one asked for, or `<base>-<method>-<n>`, never taken."""
    if requested:
        try:
            name = validate_name(requested)
        except StoreError as exc:
            raise JobError(str(exc)) from None
        if name in RESERVED_NAMES:
            raise JobError(f"{name!r} is the name of a catalog page (/models/{name}/); pick another.")
        if name_taken(name) or Job.objects.filter(output_name=name, status__in=Job.ACTIVE).exists():
            raise JobError(f"A model named {name!r} exists already (or a job is making one); pick another.")
        return name
    stem = name_from(f"{base}-{method.replace('_', '-')}")[:56]
    for n in range(1, 10_000):
        name = f"{stem}-{n}"
        if not name_taken(name) and not Job.objects.filter(output_name=name).exists():
            return name
    raise JobError("Could not find a free name for the result; give one.")


def create_job(
    owner: Any,
    *,
    kind: str,
    method: str,
    base_model: str,
    params: dict[str, Any],
    output_name: str = "",
    dataset: Dataset | None = None,
    devices_ok: list[str] | None = None,
) -> Job:
    """Save a queued Job and send its task once the row is committed. `devices_ok` (where the checks
    found it can run) is kept in params, so a resumed job is routed the same way."""
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner,
            kind=kind,
            method=method,
            base_model=base_model,
            params=params if devices_ok is None else {**params, "devices_ok": devices_ok},
            dataset=dataset,
            output_name=output_name_for(base_model, method, output_name),
        )
        enqueue(job)
    return job


def enqueue(job: Job) -> None:
    """Give the job a fresh task id and send the message after commit (call inside a transaction)."""
    job.task_id = uuid.uuid4().hex
    job.queue = choose_queue(job.params.get("devices_ok"))
    job.message_seen = timezone.now()
    job.resends = 0
    job.save(update_fields=["task_id", "queue", "message_seen", "resends"])
    _send_after_commit(job)


def _send_after_commit(job: Job) -> None:
    # By name: the tasks module imports these services, so the services do not import it back.
    name, job_id, task_id, queue = TASK_NAMES[Job.Kind(job.kind)], job.pk, job.task_id, job.queue
    transaction.on_commit(lambda: app.send_task(name, args=[job_id], task_id=task_id, queue=queue))


# --- cancelling and resuming ------------------------------------------------------------------------
def cancel_job(job: Job) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop and does within seconds."""
    now = timezone.now()
    if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, finished=now, phase="", error="Cancelled before it started."
    ):
        pass
    elif not Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(cancel_requested=True):
        raise JobError(f"This job is {job.status}; only a queued or running job can be cancelled.")
    job.refresh_from_db()
    return job


def resume_job(job: Job) -> Job:
    """Queue a failed or cancelled job again in the same work folder; the runner resumes from its
    checkpoints where it has any (a fine-tune), or starts over (a quantize is short)."""
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, status__in=[Job.Status.FAILED, Job.Status.CANCELLED]).update(
            status=Job.Status.QUEUED,
            cancel_requested=False,
            error="",
            finished=None,
            phase="",
            eta_seconds=None,
            attempt=0,
        )
        if not updated:
            raise JobError("Only a failed or cancelled job can be resumed.")
        job.refresh_from_db()
        if job.output_name and model_store().exists(job.output_name):  # an experiment makes no model
            raise JobError(f"A model named {job.output_name!r} exists already.")
        enqueue(job)
    return job


# --- lost workers -----------------------------------------------------------------------------------
WORKER_LOST = (
    "Worker lost: {worker} stopped answering while it ran this job (killed, out of memory, or the "
    "machine went away). Resume it to start again{checkpoint}."
)


def mark_lost(job: Job, reason: str | None = None) -> bool:
    checkpoint = " from its last checkpoint" if job.has_checkpoints else ""
    message = reason or WORKER_LOST.format(worker=job.worker or "its worker", checkpoint=checkpoint)
    return bool(
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, heartbeat=job.heartbeat).update(
            status=Job.Status.FAILED, error=message, finished=timezone.now(), phase="", eta_seconds=None
        )
    )


def reap_lost_jobs(restarted_worker: str | None = None) -> list[int]:
    """Mark failed the running jobs whose heartbeat is stale and whose worker is gone (or silent for long).

    Runs on each jobs page load and when a worker starts (`restarted_worker`: every job that worker was
    running is lost, since it just started). Returns the ids marked failed.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT)
    very_stale = now - timedelta(seconds=5 * settings.JOB_HEARTBEAT_TIMEOUT)
    live = {w.hostname for w in WorkerHeartbeat.objects.live()}
    lost = []
    for job in Job.objects.filter(status=Job.Status.RUNNING):
        beat = job.heartbeat or job.started or job.created
        gone = job.worker == restarted_worker or (
            beat < stale and (job.worker not in live or beat < very_stale)
        )
        if gone and mark_lost(job):
            log.warning("job %s marked failed: worker %s lost", job.pk, job.worker)
            lost.append(job.pk)
    return lost


# --- lost messages ----------------------------------------------------------------------------------
NOT_PICKED_UP = (
    "No worker picked this job up within {timeout} s, even after its message was sent again {resends} "
    "time(s): the broker may have lost it (Redis restarted without persistence), or the workers cannot "
    "run this kind of job. Resume re-queues it."
)


def note_received(job_id: int, task_id: str) -> None:
    """A worker has the job's message in hand (its pool starts it next): the message is not lost."""
    Job.objects.filter(pk=job_id, status=Job.Status.QUEUED, task_id=task_id).update(
        message_seen=timezone.now()
    )


def unclaimed_jobs() -> list[Job]:
    """Queued jobs whose message no worker has received for JOB_QUEUE_TIMEOUT seconds, on a queue that a
    live worker takes. A queue with no live worker is left alone: its jobs wait until one starts."""
    since = timezone.now() - timedelta(seconds=settings.JOB_QUEUE_TIMEOUT)
    old = Q(message_seen__lt=since) | Q(message_seen__isnull=True, created__lt=since)
    jobs = list(Job.objects.filter(old, status=Job.Status.QUEUED, cancel_requested=False).order_by("pk"))
    if not jobs:
        return []
    taken = {queue for worker in WorkerHeartbeat.objects.live() for queue in worker.queues or []}
    return [job for job in jobs if (job.queue or "cpu") in taken]


def broker_queue_sizes(queues: set[str], connection: Any = None) -> dict[str, int]:
    """Messages waiting in each of these broker queues, or {} when the broker does not answer (then
    nothing is decided: a message cannot be re-sent to a broker that is down anyway). A message a
    worker has taken no longer counts; a worker busy with another job leaves the next one waiting here."""
    conn = connection or app.connection_for_read()
    try:
        conn.ensure_connection(max_retries=0)  # one try: page loads must not hang on a broker that is down
        channel = conn.channel()
        try:
            return {queue: int(channel.queue_declare(queue=queue).message_count) for queue in queues}
        finally:
            channel.close()
    except Exception as exc:
        log.warning("could not count the messages waiting in the broker: %s", exc)
        return {}
    finally:
        if connection is None:
            conn.release()


def resend_lost_messages(connection: Any = None) -> list[int]:
    """Send again the message of each queued job that lost it; fail those sent JOB_MAX_RESENDS times.

    A job's message is lost when no worker has received it for JOB_QUEUE_TIMEOUT seconds although a live
    worker takes its queue, and that queue in the broker is empty (were it not, the message could be
    waiting there behind other work). Returns the ids re-sent or failed. `connection`: the broker to
    ask (the app's own by default).
    """
    candidates = unclaimed_jobs()
    if not candidates:
        return []
    sizes = broker_queue_sizes({job.queue or "cpu" for job in candidates}, connection)
    handled = []
    for job in candidates:
        if sizes.get(job.queue or "cpu") != 0:
            continue
        if _fail_unclaimed(job) if job.resends >= settings.JOB_MAX_RESENDS else _resend(job):
            handled.append(job.pk)
    return handled


def _resend(job: Job) -> bool:
    line = (
        f"No worker had received this job's message for {settings.JOB_QUEUE_TIMEOUT} s: "
        f"sent it again ({job.resends + 1} of {settings.JOB_MAX_RESENDS})."
    )
    old_task_id, job.task_id = job.task_id, uuid.uuid4().hex
    with transaction.atomic():
        # Only while the row still expects the old message: a worker that claimed it meanwhile wins.
        if not Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED, task_id=old_task_id).update(
            task_id=job.task_id,
            message_seen=timezone.now(),
            resends=F("resends") + 1,
            log_tail=(job.log_tail + [line])[-200:],
        ):
            return False
        _send_after_commit(job)
    log.warning(
        "job %s: no worker received message %s; sent it again as %s", job.pk, old_task_id, job.task_id
    )
    return True


def _fail_unclaimed(job: Job) -> bool:
    message = NOT_PICKED_UP.format(timeout=settings.JOB_QUEUE_TIMEOUT, resends=job.resends)
    failed = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED, task_id=job.task_id).update(
        status=Job.Status.FAILED, error=message, finished=timezone.now(), phase="", eta_seconds=None
    )
    if failed:
        log.warning("job %s marked failed: no worker received its message", job.pk)
    return bool(failed)


def check_jobs(restarted_worker: str | None = None) -> None:
    """Everything that keeps jobs from getting stuck, run on each jobs page load, when a worker starts and
    on every worker heartbeat: lost workers first, then lost messages."""
    reap_lost_jobs(restarted_worker)
    resend_lost_messages()
