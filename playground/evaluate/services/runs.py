"""Evaluation runs: one suite answered by 1-4 models with the same sampler settings and seed, as a Job of
kind "evaluate" (playground.jobs: the worker, progress, cancel, resume, lost workers). The web process
validates and queues; the worker answers every item through each model's engine (llmcore.eval_runs),
keeps each answer with its scores (EvalOutput) and the run's summary in `Job.report`. A run makes no
model. A run is its owner's: every query filters by owner, and the worker checks again that the owner
may still see the suite and each model.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from llmcore.engine import Engine
from llmcore.eval_runs import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    Answer,
    RunItem,
    RunSettings,
    answer_items,
    disagree,
    score_run,
)
from llmcore.jobs import JobContext, JobFailed, Update
from playground.catalog.services import (
    ModelNotFound,
    NeedsWeights,
    chat_models,
    check_local,
    get_visible_model,
    text_models,
)
from playground.chat.services.engines import engine_limits
from playground.core.services import PlaygroundError, model_cache
from playground.evaluate.models import EvalOutput, Suite
from playground.evaluate.services import METRICS, SuiteNotFound, get_visible_suite
from playground.jobs.models import Job
from playground.jobs.services.jobs import enqueue
from playground.jobs.services.runner import run_report_job

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "DEFAULT_TEMPERATURE", "RunSettings"]
KIND = Job.Kind.EVALUATE
MAX_MODELS = 4
# The metric that says whether an answer is right, for "the models disagree": the first the suite has.
CORRECTNESS = ("exact_match", "accuracy", "checks")
NOT_YET_REMOTE = (
    "{name} is a remote model: evaluation runs answer through this server's engine and cannot use remote "
    "models yet. Pick a model whose weights are here."
)


class RunRefused(PlaygroundError):
    """The run is not queued; `fields` gives each problem by the form field it concerns."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(p for problems in fields.values() for p in problems))
        self.fields = fields


# --- what the form offers ---------------------------------------------------------------------------
def model_choices(user: Any) -> list[tuple[str, str]]:
    """The local text models this user may use, then the remote ones (named as refused, with the reason
    at submit), so a remote name reads as a sentence rather than "unknown"."""
    local = [(e.name, e.name) for e in text_models(user)]
    remote = [(e.name, f"{e.name} (remote: not yet)") for e in chat_models(user) if e.is_remote]
    return local + remote


def model_problems(user: Any, names: list[str]) -> list[str]:
    """Why each of these models cannot be run for this user ([] when all can)."""
    problems = []
    if not 1 <= len(names) <= MAX_MODELS:
        problems.append(f"Choose 1 to {MAX_MODELS} models.")
    for name in names:
        try:
            entry = get_visible_model(user, name)
        except ModelNotFound as exc:
            problems.append(str(exc))
            continue
        if entry.is_remote:
            problems.append(NOT_YET_REMOTE.format(name=name))
        elif entry.is_encoder_only:
            problems.append(f"{name} is an encoder: it does not generate text.")
    return problems


# --- creating and reading ---------------------------------------------------------------------------
def create_run(owner: Any, suite_id: int, models: list[str], run: RunSettings) -> Job:
    """Queue a run of a suite the owner may see on models they may use, or raise RunRefused (by field)."""
    suite = get_visible_suite(owner, suite_id)
    problems = model_problems(owner, models)
    if problems:
        raise RunRefused({"models": problems})
    params = {"suite": suite.pk, "models": list(dict.fromkeys(models)), **run.as_json()}
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner,
            kind=KIND,
            method=suite.name[:40],
            base_model=models[0],
            params=params,
            output_name="",
        )
        enqueue(job)
    return job


def owned_run(user: Any, job_id: int) -> Job | None:
    """The user's own run, or None (someone else's reads as missing)."""
    return Job.objects.filter(owner=user, kind=KIND, pk=job_id).first()


def suite_runs(user: Any, suite: Suite) -> QuerySet[Job]:
    return Job.objects.filter(owner=user, kind=KIND, params__suite=suite.pk)


# --- running (in the worker) ------------------------------------------------------------------------
def run_evaluation_job(job_id: int, task_id: str | None, hostname: str) -> str:
    """The body of the evaluation task; the job's final status."""
    return run_report_job(
        job_id, task_id, hostname, evaluate, failures=(SuiteNotFound, ModelNotFound, NeedsWeights),
        what="The evaluation run", oom_advice="choose fewer or smaller models.",
    )  # fmt: skip


def run_settings(params: dict[str, Any]) -> RunSettings:
    keys = ("temperature", "top_p", "max_new_tokens", "seed")
    return RunSettings(**{k: params[k] for k in keys if params.get(k) is not None})


def evaluate(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Answer every item with every model, keep the answers with their scores; the run's summary."""
    suite = get_visible_suite(job.owner, int(job.params["suite"]))  # made private since: refused
    models = list(job.params["models"])
    for name in models:
        check_local(get_visible_model(job.owner, name), "an evaluation run")
    run = run_settings(job.params)
    items = [
        RunItem(i.input, i.references, i.tags, i.checks) for i in suite.items.order_by("index")
    ]  # fmt: skip
    if not items:
        raise JobFailed("The suite has no items.")
    EvalOutput.objects.filter(job=job).delete()  # a resumed run starts over
    started, total = time.perf_counter(), len(items) * len(models)
    results: dict[str, dict[str, Any]] = {}
    for m, name in enumerate(models):
        answers = answer_model(name, items, run, ctx, done=m * len(items), total=total)
        ctx.report(Update(step=(m + 1) * len(items), total=total, phase="scoring", log=f"scoring {name}"))
        scores = score_run(suite.metrics, items, [a.text for a in answers], suite.labels, run.seed)
        save_outputs(job, name, answers, scores.per_item)
        results[name] = scores.summary
    return {
        "summary": summary_sentence(suite, models, results),
        "suite": suite.name,
        "items": len(items),
        "seconds": round(time.perf_counter() - started, 2),
        "suite_id": suite.pk,
        "metrics": list(suite.metrics),
        "models": models,
        "settings": run.as_json(),
        "results": results,
    }


def answer_model(
    name: str, items: list[RunItem], run: RunSettings, ctx: JobContext, done: int, total: int
) -> list[Answer]:
    ctx.report(Update(step=done, total=total, phase="loading", log=f"loading {name}"))
    loaded = model_cache().get(name)
    engine = Engine(
        loaded, packed_decode=settings.ENGINE_PACKED_DECODE, threads=settings.ENGINE_THREADS or None,
        limits=engine_limits(), attention=settings.ENGINE_ATTENTION,
    )  # fmt: skip

    def landed(index: int, answer: Answer) -> None:
        sample = {"prompt": f"{name}: {items[index].input}", "output": answer.text} if index == 0 else None
        line = f"{name} #{index + 1}: {answer.tokens} tokens" + (f" ({answer.error})" if answer.error else "")
        ctx.report(Update(step=done + index + 1, total=total, phase="answering", log=line, sample=sample))

    with engine:
        return answer_items(engine, [item.input for item in items], run, ctx, on_answer=landed)


def save_outputs(job: Job, name: str, answers: list[Answer], per_item: list[dict[str, Any]]) -> None:
    EvalOutput.objects.bulk_create(
        EvalOutput(
            job=job, model_name=name, index=i, output=a.text, tokens=a.tokens, error=a.error, scores=scores
        )
        for i, (a, scores) in enumerate(zip(answers, per_item, strict=True))
    )


def summary_sentence(suite: Suite, models: list[str], results: dict[str, dict[str, Any]]) -> str:
    """The first metric's value for each model, best first: what the table says in one line."""
    metric = suite.metrics[0]
    scored = [(results[m][metric]["value"], m) for m in models if results[m][metric]["value"] is not None]
    label = METRICS.get(metric, metric)
    if not scored:
        return f"No item could be scored by {label}."
    ranked = sorted(scored, key=lambda pair: -pair[0])
    return f"{label}: " + ", ".join(f"{m} {v:.2f}" for v, m in ranked) + "."


# --- the results page -------------------------------------------------------------------------------
def correctness_metric(metrics: list[str]) -> str | None:
    return next((m for m in CORRECTNESS if m in metrics), None)


def results_view(user: Any, job: Job, only_disagreements: bool = False) -> dict[str, Any]:
    """What the results page shows of a finished run: the table of models x metrics, per-tag scores,
    accuracy's confusion and the checks' pass rates per model, and the items with every model's answer
    beside the references (only those where the models disagree, when asked)."""
    report = job.report
    models, metrics = list(report.get("models", [])), list(report.get("metrics", []))
    results = report.get("results", {})
    table = [
        {"model": m, "cells": [results.get(m, {}).get(metric, {}) for metric in metrics]} for m in models
    ]
    tags = sorted({tag for m in models for r in results.get(m, {}).values() for tag in r.get("by_tag", {})})
    by_tag = [
        {"tag": tag, "cells": [results.get(m, {}).get(metric, {}).get("by_tag", {}).get(tag, {})
                               for metric in metrics for m in models]}
        for tag in tags
    ]  # fmt: skip
    extras = [
        {"model": m, "confusion": confusion_rows(results[m].get("accuracy", {}).get("confusion")),
         "per_check": results[m].get("checks", {}).get("per_check")}
        for m in models if m in results
    ]  # fmt: skip
    rows = item_rows(user, job, models, metrics)
    shown = [row for row in rows if row["disagree"]] if only_disagreements else rows
    return {
        "models": models,
        "metrics": [(m, METRICS.get(m, m)) for m in metrics],
        "table": table,
        "by_tag": by_tag,
        "by_tag_columns": [(METRICS.get(metric, metric), m) for metric in metrics for m in models],
        "extras": [e for e in extras if e["confusion"] or e["per_check"]],
        "rows": shown,
        "disagreeing": sum(1 for row in rows if row["disagree"]),
        "suite_gone": bool(rows) and not any(row["item"] for row in rows),  # deleted, or no longer shared
    }


def confusion_rows(confusion: dict[str, Any] | None) -> dict[str, Any] | None:
    """Accuracy's confusion matrix as the page draws it: the columns, and each gold label with its row."""
    if not confusion:
        return None
    return {
        "columns": confusion["columns"],
        "rows": list(zip(confusion["labels"], confusion["matrix"], strict=True)),
    }


def item_rows(user: Any, job: Job, models: list[str], metrics: list[str]) -> list[dict[str, Any]]:
    """Each item with every model's answer, its scores (metric label, score) and whether it is right."""
    items = {}
    try:
        suite = get_visible_suite(user, int(job.report.get("suite_id") or 0))
        items = {item.index: item for item in suite.items.all()}
    except SuiteNotFound:
        pass  # deleted (or made private) since: the answers are still shown, without the inputs
    correct = correctness_metric(metrics)
    outputs: dict[int, dict[str, EvalOutput]] = {}
    for out in EvalOutput.objects.filter(job=job):
        outputs.setdefault(out.index, {})[out.model_name] = out
    rows = []
    for index in sorted(outputs):
        found = [outputs[index].get(m) for m in models]
        texts = [a.output if a else "" for a in found]
        right = [a.scores.get(correct) if a and correct else None for a in found]
        answers = [
            {"model": m, "output": a.output if a else "", "error": a.error if a else "missing",
             "right": ok, "scores": [(METRICS.get(k, k), a.scores.get(k)) for k in metrics] if a else []}
            for m, a, ok in zip(models, found, right, strict=True)
        ]  # fmt: skip
        rows.append(
            {"index": index, "item": items.get(index), "answers": answers, "disagree": disagree(texts, right)}
        )
    return rows
