from __future__ import annotations

import io
import zipfile

from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from playground.catalog import services
from playground.catalog.models import ModelEntry
from playground.core.http import Request
from playground.core.services import model_store
from playground.jobs.services.reports import report_rows, side_by_side


def visible_or_404(request: Request, name: str) -> ModelEntry:
    """The model if this user may see it; a private model of someone else is a 404 like a missing one."""
    try:
        return services.get_visible_model(request.user, name)
    except services.ModelNotFound:
        raise Http404(f"No model named {name!r} in the catalog") from None  # the 404 page adds "."


@require_GET
def model_list(request: Request) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    entries = services.visible_models(request.user)
    names = {e.name for e in entries}  # a parent outside this set is someone's private model
    if query:
        entries = [e for e in entries if query.lower() in f"{e.name} {e.family}".lower()]
    # htmx asks only for the table rows (the filter box); a normal request gets the whole page.
    template = "catalog/list.html#rows" if request.htmx else "catalog/list.html"
    context = {"entries": entries, "names": names, "q": query, "pullable": services.pullable_models()}
    return render(request, template, context)


@require_GET
def model_detail(request: Request, name: str) -> HttpResponse:
    services.sync_catalog()
    entry = visible_or_404(request, name)
    context = {"entry": entry, **access_context(request, entry), **files_context(entry)}
    report = entry.extra.get("quantize_report")
    if isinstance(report, dict) and report:
        context.update(report=report, report_rows=report_rows(report), side_rows=side_by_side(report))
    return render(request, "catalog/detail.html", context)


def access_context(request: Request, entry: ModelEntry) -> dict[str, object]:
    """Who sees the model, and what of its lineage this user may see: the parent and children only when
    they may see those too; the dataset and settings only as the owner or an admin."""
    user = request.user
    parent = entry.parent if entry.parent and services.may_see(user, entry.parent) else None
    return {
        "children": [c for c in entry.children.all() if services.may_see(user, c)],
        "parent": parent,
        "hidden_parent": entry.parent is not None and parent is None,
        "is_made": services.is_made(entry),
        "is_owner": entry.owner_id is not None and entry.owner_id == user.pk,
        "may_manage": services.may_manage(user, entry),
    }


@require_POST
def share(request: Request, name: str) -> HttpResponse:
    """Share a model with everyone (shared=1) or make it private again (shared=0): owner or admin."""
    try:
        entry = services.set_shared(request.user, name, request.POST.get("shared") == "1")
    except services.ModelNotFound:
        raise Http404(f"No model named {name!r} in the catalog") from None
    except services.SharingRefused as exc:
        raise PermissionDenied(str(exc)) from None
    if request.htmx:
        context = {"entry": entry, **access_context(request, entry)}
        return render(request, "catalog/detail.html#sharing", context)
    return redirect("catalog:detail", entry.name)


def files_context(entry: ModelEntry) -> dict[str, object]:
    """Files a user can take elsewhere: a GGUF export, a fine-tune's peft adapter."""
    folder = model_store().path(entry.name)
    gguf = sorted(folder.glob("*.gguf"))
    adapter = folder / "adapter"
    return {
        "gguf_file": gguf[0].name if gguf else None,
        "gguf_bytes": gguf[0].stat().st_size if gguf else None,
        "has_adapter": (adapter / "adapter_config.json").is_file(),
    }


@require_GET
def download(request: Request, name: str, what: str) -> HttpResponseBase:
    """A model's GGUF export (for llama.cpp-based tools) or its peft adapter as a zip. Only these two:
    the names of what is sent come from the store's own folder, never from the request."""
    entry = visible_or_404(request, name)
    if not model_store().exists(entry.name):
        raise Http404(f"No model named {name!r}.")
    found = files_context(entry)
    folder = model_store().path(entry.name)
    if what == "gguf" and found["gguf_file"]:
        path = folder / str(found["gguf_file"])
        return FileResponse(path.open("rb"), as_attachment=True, filename=f"{entry.name}.gguf")
    if what == "adapter" and found["has_adapter"]:
        buffer = io.BytesIO()  # adapters are small (a LoRA of rank 8 on the default model: ~2 MB)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for item in sorted((folder / "adapter").iterdir()):
                if item.is_file():
                    archive.write(item, f"{entry.name}-adapter/{item.name}")
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{entry.name}-adapter.zip"'
        return response
    raise Http404(f"{entry.name} has no {what} to download.")
