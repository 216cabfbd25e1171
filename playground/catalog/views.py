from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from playground.catalog import services
from playground.catalog.models import ModelEntry


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
    return render(request, "catalog/detail.html", {"entry": entry, "children": entry.children.all()})
