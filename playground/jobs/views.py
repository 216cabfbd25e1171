"""Jobs pages: the list, one job (live through htmx polling), the new-job forms and datasets."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.catalog.services import ModelNotFound, get_visible_model, text_models
from playground.core.http import Request
from playground.core.live import live_page
from playground.jobs.forms import DatasetForm, FinetuneForm, QuantizeForm
from playground.jobs.models import Dataset, Job
from playground.jobs.services import checks
from playground.jobs.services.compare import CompareError, compare_with_parent, parent_of
from playground.jobs.services.datasets import (
    DatasetRejected,
    preview_dataset,
    sample_datasets,
    save_dataset,
    save_sample,
    too_big,
)
from playground.jobs.services.jobs import (
    JobError,
    cancel_job,
    create_job,
    live_devices,
    resume_job,
)
from playground.jobs.services.reports import param_rows, report_view


def owned_job(request: Request, job_id: int) -> Job:
    job = Job.objects.filter(pk=job_id, owner=request.user).select_related("dataset").first()
    if job is None:
        raise Http404("No such job.")
    return job


def catalog_names(user: Any) -> list[str]:
    """The text models this user may build on (base, teacher, student, preview): not others' private ones."""
    return [e.name for e in text_models(user)]


@require_GET
def job_list(request: Request) -> HttpResponse:
    jobs = Job.objects.filter(owner=request.user)[:200]
    context = {"jobs": jobs, "any_active": any(j.is_active for j in jobs), "devices": live_devices()}
    return render(request, "jobs/list.html#rows" if request.htmx else "jobs/list.html", context)


@require_GET
def job_detail(request: Request, job_id: int) -> HttpResponse:
    job = owned_job(request, job_id)
    context: dict[str, Any] = {
        "job": job,
        "report_view": report_view(job.report, job.kind),
        "params": param_rows(job.kind, job.method, job.chosen_params),
    }
    return live_page(request, "jobs/detail.html", context)


@require_GET
def job_status(request: Request, job_id: int) -> JsonResponse:
    job = owned_job(request, job_id)
    fields = ["status", "phase", "step", "total", "eta_seconds", "error", "output_model", "attempt"]
    fields += ["device", "resends"]
    body = {
        "id": job.pk,
        **{f: getattr(job, f) for f in fields},
        "metrics": job.metrics,
        "report": job.report,
    }
    return JsonResponse(body)


@require_POST
def job_cancel(request: Request, job_id: int) -> HttpResponse:
    try:
        cancel_job(owned_job(request, job_id))
    except JobError as exc:
        messages.error(request, str(exc))
    return redirect("jobs:detail", job_id)


@require_POST
def job_resume(request: Request, job_id: int) -> HttpResponse:
    try:
        resume_job(owned_job(request, job_id))
    except JobError as exc:
        messages.error(request, str(exc))
    return redirect("jobs:detail", job_id)


def new_job(
    request: Request, kind: Job.Kind, form_class: Any, methods: dict[str, str], **kw: Any
) -> HttpResponse:
    """A new-job form: opened with the method that runs here preselected (then what the link asked for);
    on submit every problem at once beside its field, or the job queued where the checks said it can run."""
    models = catalog_names(request.user)
    if request.method == "GET":
        notes = checks.method_notes(kind, models[0] if models else None)
        start = {"method": checks.default_method(kind, notes), **request.GET.dict()}
        return form_page(
            request, form_class(models=models, methods=methods, initial=start, **kw), kind, notes
        )
    form = form_class(request.POST, models=models, methods=methods, **kw)
    if form.is_valid() and form.feasible:
        data = form.cleaned_data
        try:
            job = create_job(
                request.user,
                kind=kind,
                method=data["method"],
                base_model=data["base_model"],
                params=form.params(),
                output_name=data["output_name"],
                dataset=data.get("dataset"),
                devices_ok=form.feasible.devices_ok,
            )
            return redirect("jobs:detail", job.pk)
        except JobError as exc:  # the name was taken since the form checked it
            form.add_error("output_name", str(exc))
    return form_page(request, form, kind, checks.method_notes(kind, models[0] if models else None))


def form_page(request: Request, form: Any, kind: str, notes: dict[str, str]) -> HttpResponse:
    context = {"form": form, "kind": kind, "devices": live_devices(), "notes": notes}
    return render(request, "jobs/new.html", context)


@require_http_methods(["GET", "POST"])
def new_quantize(request: Request) -> HttpResponse:
    return new_job(request, Job.Kind.QUANTIZE, QuantizeForm, checks.quant_methods())


@require_http_methods(["GET", "POST"])
def new_finetune(request: Request) -> HttpResponse:
    return new_job(request, Job.Kind.FINETUNE, FinetuneForm, checks.finetune_methods(), owner=request.user)


@require_http_methods(["GET", "POST"])
def dataset_list(request: Request) -> HttpResponse:
    form = DatasetForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
    )
    if request.method == "POST" and form.is_valid():
        upload, text = form.cleaned_data["file"], form.cleaned_data["text"]
        try:
            if upload is not None:
                if upload.size > settings.DATASET_MAX_BYTES:
                    raise DatasetRejected(too_big(upload.size))
                dataset = save_dataset(request.user, upload.read(), form.cleaned_data["name"] or upload.name)
            else:
                suffix = ".jsonl" if text.lstrip().startswith(("{", "[")) else ".txt"
                name = form.cleaned_data["name"] or "pasted"
                dataset = save_dataset(request.user, text.encode(), f"{name}{suffix}")
            return redirect("jobs:dataset", dataset.pk)
        except DatasetRejected as exc:
            form.add_error(None, str(exc))
    context = {
        "form": form,
        "datasets": Dataset.objects.filter(owner=request.user),
        "samples": sorted(sample_datasets()),
    }
    return render(request, "jobs/datasets.html", context, status=400 if form.errors else 200)


@require_POST
def dataset_sample(request: Request) -> HttpResponse:
    try:
        dataset = save_sample(request.user, request.POST.get("sample", ""))
    except DatasetRejected as exc:
        messages.error(request, str(exc))
        return redirect("jobs:datasets")
    return redirect("jobs:dataset", dataset.pk)


@require_GET
def dataset_detail(request: Request, dataset_id: int) -> HttpResponse:
    dataset = Dataset.objects.filter(pk=dataset_id, owner=request.user).first()
    if dataset is None:
        raise Http404("No such dataset.")
    models = catalog_names(request.user)
    model = request.GET.get("model") or (models[0] if models else "")
    examples, preview_error = [], ""
    if model in models and dataset.rows:
        try:
            examples = preview_dataset(dataset, model)
        except Exception as exc:  # a tokenizer that cannot load is shown, not a 500
            preview_error = f"No preview with {model}: {exc}"
    context = {"dataset": dataset, "models": models, "model": model, "examples": examples}
    return render(request, "jobs/dataset.html", {**context, "preview_error": preview_error})


@require_GET
def compare(request: Request, name: str) -> HttpResponse:
    """The page answers at once; htmx then asks for the numbers and generations (several seconds)."""
    try:
        get_visible_model(request.user, name)
        parent = parent_of(name)
    except (CompareError, ModelNotFound) as exc:
        raise Http404(str(exc)) from None
    try:
        get_visible_model(request.user, parent)  # running someone's private parent would show it
    except ModelNotFound:
        raise Http404(f"{name} has no parent you can see to compare with") from None
    context: dict[str, Any] = {"name": name, "parent": parent}
    if request.htmx:
        try:
            context["result"] = compare_with_parent(name)
        except Exception as exc:  # a model that cannot load is explained on the page, not a 500
            context["error"] = f"{type(exc).__name__}: {exc}"[:500]
        return render(request, "jobs/compare.html#result", context)
    return render(request, "jobs/compare.html", context)
