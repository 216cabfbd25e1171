"""Accelerate: engine experiments (llmcore.experiments) as jobs of kind "accelerate".

The web process only validates, saves a queued Job (method = the experiment, base_model = the model,
params = the config) and sends its task; a worker claims it like any job (playground.jobs: claim, the
row writer, the heartbeat, cancel and resume) and keeps the result JSON in `Job.report`. Experiments
make no model, so nothing joins the catalog. What a user makes is theirs: every query filters by owner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from llmcore import experiments
from llmcore.experiments import EXPERIMENTS, ExperimentError, QualityConfig
from llmcore.jobs import JobContext, JobFailed
from llmcore.tokenize import load_pretrained_tokenizer
from playground.catalog.services import ModelNotFound, get_visible_model, text_models, visible_models
from playground.core.services import model_cache, model_store
from playground.jobs.models import Job
from playground.jobs.services.jobs import JobError, cancel_job, check_jobs, enqueue, live_devices, resume_job
from playground.jobs.services.runner import run_report_job

__all__ = [
    "EXPERIMENTS",
    "ExperimentError",
    "JobError",
    "cancel_job",
    "check_jobs",
    "compare_experiments",
    "create_experiment",
    "draft_problem",
    "experiment_fields",
    "finished",
    "live_devices",
    "owned_experiment",
    "quantized_children",
    "resume_job",
    "run_experiment_job",
    "text_models",
    "user_experiments",
]

KIND = Job.Kind.ACCELERATE


# --- what the form offers ---------------------------------------------------------------------------
def experiment_fields(kind: str) -> list[dataclasses.Field[Any]]:
    """The config fields of one experiment, with their bounds and help (llmcore's metadata)."""
    return list(dataclasses.fields(EXPERIMENTS[kind][1]))  # type: ignore[arg-type]


def config_defaults(kind: str) -> dict[str, Any]:
    return EXPERIMENTS[kind][1]().as_json()


def quantized_children(user: Any, parent: str) -> list[dict[str, Any]]:
    """The quantized children of `parent` this user may see, with the verify report each quantize job
    stored in its catalog meta (`extra["quantize_report"]`)."""
    children = []
    for entry in visible_models(user):
        report = entry.extra.get("quantize_report")
        if entry.parent is not None and entry.parent.name == parent and isinstance(report, dict):
            children.append({"name": entry.name, "method": entry.method, "report": report})
    return children


def draft_problem(model: str, draft: str) -> str:
    """'' when `draft` can propose tokens for `model` (the same vocabulary); else why not."""
    try:
        store = model_store()
        target = load_pretrained_tokenizer(store.path(model)).get_vocab()
        proposer = load_pretrained_tokenizer(store.path(draft)).get_vocab()
    except Exception as exc:  # a tokenizer that does not load is a reason, not a 500
        return f"Could not read the tokenizers: {exc}"[:300]
    if target != proposer:
        return f"{draft} does not share {model}'s tokenizer, so it cannot draft tokens for it."
    return ""


# --- creating and reading ---------------------------------------------------------------------------
def create_experiment(owner: Any, kind: str, model: str, config: Any) -> Job:
    """Save a queued experiment job and send its task after commit (the worker runs it)."""
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner, kind=KIND, method=kind, base_model=model, params=config.as_json(), output_name=""
        )
        enqueue(job)
    return job


def user_experiments(user: Any) -> QuerySet[Job]:
    return Job.objects.filter(owner=user, kind=KIND)


def owned_experiment(user: Any, job_id: int) -> Job | None:
    """The user's own experiment, or None (someone else's reads as missing)."""
    return user_experiments(user).filter(pk=job_id).first()


def finished(user: Any, kind: str | None = None) -> QuerySet[Job]:
    jobs = user_experiments(user).filter(status=Job.Status.SUCCEEDED)
    return jobs.filter(method=kind) if kind else jobs


def compare_experiments(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """The charts of finished experiments of one kind, overlaid (ExperimentError when they differ)."""
    labelled = [(f"#{job.pk}", job.report) for job in jobs]
    return experiments.overlay(labelled)


# --- running (in the worker) ------------------------------------------------------------------------
def run_experiment_job(job_id: int, task_id: str | None, hostname: str) -> str:
    """The body of the experiment task: claim the row, measure, keep the result; the job's final status."""
    return run_report_job(
        job_id, task_id, hostname, measure, failures=(ExperimentError, ModelNotFound),
        what="The experiment", oom_advice="choose smaller sizes.",
    )  # fmt: skip


def measure(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The experiment of `job` on this worker, as its owner may run it (models they may see)."""
    config = experiments.config_for(job.method, job.params)
    get_visible_model(job.owner, job.base_model)  # made private since it was queued: refused
    if isinstance(config, QualityConfig):
        return experiments.quality_tradeoff(job.base_model, quantized_children(job.owner, job.base_model))
    draft = getattr(config, "draft_model", "")
    if draft:
        get_visible_model(job.owner, draft)
        problem = draft_problem(job.base_model, draft)
        if problem:
            raise JobFailed(problem)
    ctx.log(f"loading {job.base_model}")
    loaded = model_cache().get(job.base_model)
    options = {
        "packed_decode": settings.ENGINE_PACKED_DECODE,
        "threads": settings.ENGINE_THREADS or None,
        "attention": settings.ENGINE_ATTENTION,
    }
    return experiments.run_experiment(loaded, config, ctx, engine_options=options, drafts=model_cache().get)
