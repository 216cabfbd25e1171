from __future__ import annotations

import io
import zipfile
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from playground.catalog import services
from playground.catalog.models import ModelEntry
from playground.core.http import Request
from playground.core.services import model_store
from playground.jobs.services.reports import param_rows, report_view


def visible_or_404(request: Request, name: str) -> ModelEntry:
    """The model if this user may see it; a private model of someone else is a 404 like a missing one."""
    try:
        return services.get_visible_model(request.user, name)
    except services.ModelNotFound:
        raise Http404(f"No model named {name!r} in the catalog") from None


# The catalog table's columns past the name: (key, header). All of them are wider than a 1,400-pixel
# window, so a user picks which to show (kept in their session); these are shown until they do.
COLUMNS = {
    "family": "Family",
    "parameters": "Parameters",
    "layers": "Layers",
    "heads": "Heads",
    "kv_heads": "KV heads",
    "attention": "Attention",
    "positional": "Positions",
    "hidden": "Hidden",
    "vocab": "Vocabulary",
    "context": "Context",
    "dtype": "Dtype",
    "size": "On disk",
    "license": "License",
    "parent": "Parent",
    "source": "Source",
}
DEFAULT_COLUMNS = [
    *("family", "parameters", "layers", "heads", "kv_heads", "attention", "context", "size"),
    *("license", "parent"),
]


def chosen_columns(request: Request) -> list[str]:
    """The columns this user shows: from the Columns form when it was sent (remembered in the session),
    else what they chose last, else the defaults. Unknown names are dropped: the form sends only ours."""
    if "columns" in request.GET:
        asked = request.GET.getlist("col")
        chosen = list(COLUMNS) if "all" in asked else [key for key in COLUMNS if key in asked]
        request.session["catalog_columns"] = chosen
        return chosen
    remembered = request.session.get("catalog_columns")
    if isinstance(remembered, list):
        return [key for key in COLUMNS if key in remembered]
    return list(DEFAULT_COLUMNS)


@require_GET
def model_list(request: Request) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    entries = services.visible_models(request.user)
    names = {e.name for e in entries}  # a parent outside this set is someone's private model
    if query:
        entries = [e for e in entries if query.lower() in f"{e.name} {e.family}".lower()]
    # htmx asks only for the table rows (the filter box); a normal request gets the whole page.
    template = "catalog/list.html#rows" if request.htmx else "catalog/list.html"
    cols = chosen_columns(request)
    context = {
        "entries": entries,
        "hidden_parents": {e.name for e in entries if e.parent and e.parent.name not in names},
        "q": query,
        "pullable": services.pullable_models(),
        "cols": cols,
        "columns": [(key, header, key in cols) for key, header in COLUMNS.items()],
        "span": len(cols) + 1,
        "columns_open": "columns" in request.GET,  # just chosen (the form reloads the page): keep it open
    }
    return render(request, template, context)


@require_GET
def model_detail(request: Request, name: str) -> HttpResponse:
    services.sync_catalog()
    entry = visible_or_404(request, name)
    context = {
        "entry": entry,
        "tools": tools_for(entry),
        **access_context(request, entry),
        **files_context(entry),
        **lineage_context(entry),
    }
    return render(request, "catalog/detail.html", context)


def lineage_context(entry: ModelEntry) -> dict[str, Any]:
    """What the job that made the model left in its meta, as the page shows it (the jobs app's reports):
    the quantize report, the job's settings that mean something for its method, its final metrics."""
    extra: dict[str, Any] = entry.extra
    found: dict[str, Any] = {}
    report = extra.get("quantize_report")
    if isinstance(report, dict) and report:
        found.update(report=report, report_view=report_view(report, "quantize"))
    if extra.get("job"):
        params = extra.get("hyperparameters") or {}
        found["lineage_params"] = param_rows(str(extra.get("kind", "")), entry.method, params)
        found["final_metrics"] = report_view(extra.get("final_metrics") or {}, "finetune").facts
    return found


# What can be done with a model, each tool opened on it: (label, url name, query key, what it shows).
# An encoder (no causal head) has no next token to predict, so the text tools say why they do not apply.
TOOLS = [
    ("Chat", "chat:index", "model", "talk with it, streaming, with the sampler's settings", True),
    ("Tokenizer", "inspect:tokenize", "models", "how it splits text into tokens", False),
    ("Attention", "inspect:attention", "model", "every layer's and head's attention", False),
    ("Next token", "inspect:next-token", "model", "its next-token distribution and the sampler", True),
    ("Logit lens", "inspect:logit-lens", "model", "what each layer would predict", True),
    ("Fine-tune", "jobs:new-finetune", "base_model", "train it further on a dataset", True),
    ("Quantize", "jobs:new-quantize", "base_model", "store it in fewer bits and compare", True),
]


def tools_for(entry: ModelEntry) -> list[dict[str, str]]:
    """Every tool, linked to open on this model; for an encoder, the text tools with the reason instead;
    for a remote model, the chat alone."""
    rows = []
    for label, url_name, key, what, needs_decoder in TOOLS:
        if entry.is_remote:  # only the chat talks to another server; every other tool reads weights
            why = "" if url_name == "chat:index" else f"its weights are on {entry.meta['remote'].get('host')}"
        else:
            why = "an encoder predicts no next token" if needs_decoder and entry.is_encoder_only else ""
        url = "" if why else f"{reverse(url_name)}?{urlencode({key: entry.name})}"
        rows.append({"label": label, "url": url, "what": what, "why": why})
    return rows


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
        "may_remove": services.may_remove(user, entry),
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
    """Files a user can take elsewhere: a GGUF export, a fine-tune's peft adapter (none for a remote
    model, whose files are on its server)."""
    if entry.is_remote:
        return {"gguf_file": None, "gguf_bytes": None, "has_adapter": False}
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
