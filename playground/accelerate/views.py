"""The Accelerate page: queue engine experiments, follow them live, see and compare their plots."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.accelerate import services
from playground.accelerate.forms import ExperimentForm
from playground.core.http import Request
from playground.core.live import live_page
from playground.jobs.models import Job


def _owned(request: Request, job_id: int) -> Job:
    job = services.owned_experiment(request.user, job_id)
    if job is None:
        raise Http404("No such experiment.")
    return job


def _list_context(request: Request) -> dict[str, Any]:
    jobs = list(services.user_experiments(request.user)[:200])
    labels = _labels()
    for job in jobs:
        job.experiment_label = labels.get(job.method, job.method)  # type: ignore[attr-defined]
    return {"jobs": jobs, "any_active": any(j.is_active for j in jobs)}


def _labels() -> dict[str, str]:
    return {kind: label for kind, (label, _, _) in services.EXPERIMENTS.items()}


@require_http_methods(["GET", "POST"])
def page(request: Request) -> HttpResponse:
    if request.htmx and request.method == "GET":
        return render(request, "accelerate/page.html#rows", _list_context(request))
    form = ExperimentForm(request.POST if request.method == "POST" else None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        job = services.create_experiment(request.user, data["experiment"], data["model"], data["config"])
        return redirect("accelerate:detail", job.pk)
    context = {**_list_context(request), "form": form, "devices": services.live_devices()}
    context["finished"] = [j for j in context["jobs"] if j.status == Job.Status.SUCCEEDED]
    return render(request, "accelerate/page.html", context, status=400 if form.errors else 200)


@require_GET
def detail(request: Request, job_id: int) -> HttpResponse:
    job = _owned(request, job_id)
    others = services.finished(request.user, job.method).exclude(pk=job.pk)[:50]
    context: dict[str, Any] = {
        "job": job,
        "label": _labels().get(job.method, job.method),
        "others": others,
        "parameters": [(k.replace("_", " "), _shown(v)) for k, v in job.chosen_params.items()],
        "columns": [str(k).replace("_", " ") for k in (job.report.get("table") or [{}])[0]],
    }
    return live_page(request, "accelerate/detail.html", context)


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "all available"
    return str(value) if value not in (None, "") else "none"


@require_POST
def cancel(request: Request, job_id: int) -> HttpResponse:
    try:
        services.cancel_job(_owned(request, job_id))
    except services.JobError as exc:
        messages.error(request, str(exc))
    return redirect("accelerate:detail", job_id)


@require_POST
def resume(request: Request, job_id: int) -> HttpResponse:
    try:
        services.resume_job(_owned(request, job_id))
    except services.JobError as exc:
        messages.error(request, str(exc))
    return redirect("accelerate:detail", job_id)


@require_GET
def compare(request: Request) -> HttpResponse:
    """Two finished experiments of one kind, their plots overlaid (?a=<id>&b=<id>)."""
    ids = [request.GET.get("a", ""), request.GET.get("b", "")]
    if not all(i.isdigit() and len(i) < 12 for i in ids):
        return _compare_refused(request, "Pick two finished experiments to compare.")
    jobs = [_owned(request, int(i)) for i in ids]
    if any(j.status != Job.Status.SUCCEEDED for j in jobs):
        return _compare_refused(request, "Both experiments must have finished.")
    if ids[0] == ids[1]:
        return _compare_refused(request, "Pick two different experiments.")
    try:
        charts = services.compare_experiments(jobs)
    except services.ExperimentError as exc:
        return _compare_refused(request, str(exc))
    context = {"jobs": jobs, "charts": charts, "label": _labels().get(jobs[0].method, jobs[0].method)}
    return render(request, "accelerate/compare.html", context)


def _compare_refused(request: Request, reason: str) -> HttpResponse:
    return render(request, "accelerate/compare.html", {"error": reason}, status=400)
