"""Evaluate pages: the suites a user may see, one suite's items, adding a suite (upload or paste), sharing
and deleting one's own; running a suite on models (a job) and its results."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.core.http import Request
from playground.evaluate import services
from playground.evaluate.forms import RunForm, SuiteForm
from playground.evaluate.models import Suite
from playground.evaluate.services import runs


def visible_or_404(request: Request, suite_id: int, own: bool = False) -> Suite:
    try:
        if own:
            return services.get_own_suite(request.user, suite_id)
        return services.get_visible_suite(request.user, suite_id)
    except services.SuiteNotFound:
        raise Http404("No such suite.") from None


@require_http_methods(["GET", "POST"])
def suite_list(request: Request) -> HttpResponse:
    posted = request.method == "POST"
    form = SuiteForm(request.POST if posted else None, request.FILES if posted else None)
    if posted and form.is_valid():
        data = form.cleaned_data
        upload = data["file"]
        source = "file" if upload is not None else "text"
        content = upload.read() if upload is not None else data["text"].encode()
        filename = upload.name if upload is not None else "pasted.jsonl"
        try:
            suite = services.create_suite(
                request.user, content, filename, name=data["name"], description=data["description"],
                task=data["task"], metrics=data["metrics"], labels=data["labels"],
            )  # fmt: skip
            return redirect("evaluate:suite", suite.pk)
        except services.SuiteRefused as exc:
            for line_error in exc.errors:
                form.add_error(source, str(line_error))
    context = {
        "form": form,
        "suites": services.visible_suites(request.user),
        "tasks": services.TASKS,
        "metrics": services.METRICS,
        "limits": services.limits(),
    }
    return render(request, "evaluate/list.html", context, status=400 if form.errors else 200)


def suite_page(request: Request, suite: Suite, form: RunForm) -> HttpResponse:
    items = [
        {"item": item, "checks": [services.check_in_words(c) for c in item.checks]}
        for item in suite.items.all()
    ]
    context = {
        "suite": suite, "items": items, "is_owner": suite.owner_id == request.user.pk, "form": form,
        "runs": runs.suite_runs(request.user, suite)[:50], "tasks": services.TASKS,
    }  # fmt: skip
    return render(request, "evaluate/suite.html", context, status=400 if form.errors else 200)


@require_GET
def suite_detail(request: Request, suite_id: int) -> HttpResponse:
    return suite_page(request, visible_or_404(request, suite_id), RunForm(user=request.user))


@require_POST
def suite_run(request: Request, suite_id: int) -> HttpResponse:
    """Queue a run of the suite on the models chosen; the job page follows it."""
    suite = visible_or_404(request, suite_id)
    form = RunForm(request.POST, user=request.user)
    if form.is_valid():
        try:
            job = runs.create_run(request.user, suite.pk, form.cleaned_data["models"], form.run_settings())
            return redirect("jobs:detail", job.pk)
        except runs.RunRefused as exc:
            for field, problems in exc.fields.items():
                for problem in problems:
                    form.add_error(field, problem)
    return suite_page(request, suite, form)


@require_GET
def run_detail(request: Request, job_id: int) -> HttpResponse:
    """A run's results: only its owner's; anyone else's (or no run) is a 404."""
    job = runs.owned_run(request.user, job_id)
    if job is None:
        raise Http404("No such run.")
    only = request.GET.get("disagree") == "1"
    view = runs.results_view(request.user, job, only) if job.status == job.Status.SUCCEEDED else None
    return render(request, "evaluate/run.html", {"job": job, "view": view, "only_disagreements": only})


@require_POST
def suite_share(request: Request, suite_id: int) -> HttpResponse:
    visible_or_404(request, suite_id, own=True)
    suite = services.set_shared(request.user, suite_id, request.POST.get("shared") == "1")
    if request.htmx:
        return render(request, "evaluate/suite.html#sharing", {"suite": suite, "is_owner": True})
    return redirect("evaluate:suite", suite.pk)


@require_http_methods(["GET", "POST"])
def suite_delete(request: Request, suite_id: int) -> HttpResponse:
    """GET asks for confirmation; the POST from that page deletes."""
    suite = visible_or_404(request, suite_id, own=True)
    if request.method == "POST":
        services.delete_suite(request.user, suite.pk)
        return redirect("evaluate:list")
    return render(request, "evaluate/delete.html", {"suite": suite})
