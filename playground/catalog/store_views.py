"""The pages that change what is in the store: Add a model (pull a curated one, import your own) and
Remove. Pulls and imports run as jobs (playground/jobs/services/adding.py); this only validates, queues
and sends the user to the job's progress."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.catalog import services
from playground.catalog.forms import ImportForm, RemoteForm
from playground.catalog.views import visible_or_404
from playground.core.http import Request
from playground.jobs.services.adding import (
    AddRefused,
    check_may_import,
    pullable_rows,
    queue_import,
    queue_pull,
    upload_too_big,
)


def add_page(
    request: Request,
    form: ImportForm | None = None,
    pull_error: tuple[str, str] | None = None,
    status: int = 200,
    remote_form: RemoteForm | None = None,
) -> HttpResponse:
    rows = pullable_rows(request.user)
    stray = pull_error is not None and all(row["spec"].name != pull_error[0] for row in rows)
    context = {
        "rows": rows,
        "stray_error": pull_error[1] if pull_error and stray else "",
        "may_import": services.is_admin(request.user),
        "form": form or ImportForm(),
        "pull_error": pull_error,
        "upload_limit": settings.MODEL_UPLOAD_MAX_BYTES,
        "remote_form": remote_form or RemoteForm(prefix="remote"),
        "remote_hosts": settings.REMOTE_MODEL_HOSTS,
    }
    return render(request, "catalog/add.html", context, status=status)


@require_GET
def add(request: Request) -> HttpResponse:
    return add_page(request)


@require_POST
def pull(request: Request) -> HttpResponse:
    name = request.POST.get("name", "")
    try:
        job = queue_pull(request.user, name)
    except AddRefused as exc:
        return add_page(request, pull_error=(name, str(exc)), status=exc.status)
    return redirect("jobs:detail", job.pk)


class UploadLimit(FileUploadHandler):
    """Counts the bytes of an upload's files together as they arrive and stops reading past
    MODEL_UPLOAD_MAX_BYTES, so that a too-big upload is refused with the limit rather than kept cut
    short (or written to disk whole)."""

    received = 0
    exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.MODEL_UPLOAD_MAX_BYTES:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data  # on to the handler that keeps it

    def file_complete(self, file_size: int) -> None:
        return None


@csrf_exempt  # checked by import_checked: the limit must be in place before CSRF's check reads the body
@require_POST
def import_model(request: Request) -> HttpResponse:
    check_may_import(request.user)  # 403 before a byte of someone else's upload is kept
    limit = UploadLimit(request)
    request.upload_handlers.insert(0, limit)
    return import_checked(request, limit)


@csrf_protect
def import_checked(request: Request, limit: UploadLimit) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES)
    valid = form.is_valid()
    if limit.exceeded:
        field = limit.field_name if limit.field_name in ("gguf", "folder") else None
        form.add_error(field, upload_too_big(int(request.META.get("CONTENT_LENGTH") or 0) or None))
        return add_page(request, form, status=413)
    if not valid:
        return add_page(request, form, status=400)
    field, files = form.upload()
    data = form.cleaned_data
    try:
        job = queue_import(
            request.user,
            name=data["name"].strip(),
            path=data["path"],
            files=files,
            folder=data["folder_name"],
        )
    except AddRefused as exc:
        form.add_error((field or None) if exc.field == "upload" else exc.field, str(exc))
        return add_page(request, form, status=exc.status)
    return redirect("jobs:detail", job.pk)


@require_POST
def remote(request: Request) -> HttpResponse:
    """Add an OpenAI-compatible server's model as a remote model (admins); errors beside their fields."""
    services.check_may_add(
        request.user
    )  # 403 for everyone else, before anything is read or asked of a server
    form = RemoteForm(request.POST, prefix="remote")  # its fields apart from the import form's
    if not form.is_valid():
        return add_page(request, remote_form=form, status=400)
    data = form.cleaned_data
    try:
        entry = services.add_remote(
            request.user,
            name=data["name"],
            base_url=data["base_url"],
            model=data["model"],
            api_key=data["api_key"],
        )
    except services.RemoteRefused as exc:
        form.add_error(exc.field or None, str(exc))
        return add_page(request, remote_form=form, status=exc.status)
    messages.success(
        request, f"Added {entry.name}, served by {entry.meta['remote']['host']}: it is in the chat's models."
    )
    return redirect("catalog:detail", entry.name)


@require_http_methods(["GET", "POST"])
def remove(request: Request, name: str) -> HttpResponse:
    """A confirmation page that says what depends on the model; its POST removes it (owner or admin for a
    made model, admins for a base model; others get 403, or 404 when they may not see it)."""
    entry = visible_or_404(request, name)
    services.check_may_remove(request.user, entry)
    context: dict[str, Any] = {"entry": entry, "is_default": entry.name == services.DEFAULT_MODEL}
    if request.method == "POST":
        try:
            services.remove_model_as(request.user, entry.name)
        except services.RemoveRefused as exc:
            context.update(error=str(exc), deps=services.dependents(request.user, entry))
            return render(request, "catalog/remove.html", context, status=exc.status)
        messages.success(request, f"Removed {entry.name} from the store and the catalog.")
        return redirect("catalog:list")
    context["deps"] = services.dependents(request.user, entry)
    return render(request, "catalog/remove.html", context)
