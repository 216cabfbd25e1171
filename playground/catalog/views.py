from __future__ import annotations

import io
import zipfile

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from playground.catalog import services
from playground.catalog.models import ModelEntry
from playground.core.services import model_store


def model_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    entries = services.list_models()
    if query:
        entries = [e for e in entries if query.lower() in f"{e.name} {e.family}".lower()]
    # htmx asks only for the table rows (the filter box); a normal request gets the whole page.
    template = "catalog/list.html#rows" if request.htmx else "catalog/list.html"
    context = {"entries": entries, "q": query, "pullable": services.pullable_models()}
    return render(request, template, context)


def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    services.sync_catalog()
    entry = ModelEntry.objects.select_related("parent").filter(name=name).first()
    if entry is None:
        raise Http404(f"No model named {name!r}.")
    context = {"entry": entry, "children": entry.children.all(), **files_context(entry)}
    report = entry.extra.get("quantize_report")
    if isinstance(report, dict) and report:
        from playground.jobs.views import report_rows, side_by_side

        context.update(report=report, report_rows=report_rows(report), side_rows=side_by_side(report))
    return render(request, "catalog/detail.html", context)


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


def download(request: HttpRequest, name: str, what: str) -> HttpResponse:
    """A model's GGUF export (for llama.cpp-based tools) or its peft adapter as a zip. Only these two:
    the names of what is sent come from the store's own folder, never from the request."""
    entry = ModelEntry.objects.filter(name=name).first()  # the detail page linking here synced the catalog
    if entry is None or not model_store().exists(entry.name):
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
