"""The API keys page: a user's keys with their usage, a new key's secret shown once, revocation after a
confirmation; an admin also sees, and may revoke, every user's keys."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.apikeys import services
from playground.apikeys.forms import ApiKeyForm
from playground.core.http import Request


def page_context(request: Request, form: ApiKeyForm | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "form": form or ApiKeyForm(),
        "keys": services.key_summaries(services.keys_of(request.user)),
        "usage_days": services.USAGE_DAYS,
    }
    if request.user.is_staff:
        context["every_key"] = services.every_key().exclude(owner=request.user)
    return context


@require_GET
def key_list(request: Request) -> HttpResponse:
    return render(request, "apikeys/list.html", page_context(request))


@require_POST
def key_create(request: Request) -> HttpResponse:
    """Make a key and show its secret on this response only: it is stored nowhere, so a reload cannot
    show it again."""
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return render(request, "apikeys/list.html", page_context(request, form), status=400)
    key, secret = services.create_key(request.user, form.cleaned_data["name"])
    context = {**page_context(request), "new_key": key, "new_secret": secret}
    response = render(request, "apikeys/list.html", context, status=201)
    response["Cache-Control"] = "no-store"  # the secret stays out of every cache, the browser's included
    return response


@require_http_methods(["GET", "POST"])
def key_revoke(request: Request, key_id: int) -> HttpResponse:
    """GET asks for a confirmation; POST revokes. Another user's key is a 404 (an admin's: any key)."""
    key = services.key_for(request.user, key_id)
    if request.method == "GET":
        return render(request, "apikeys/revoke.html", {"key": key})
    services.revoke_key(key, request.user)
    messages.success(request, f"Revoked {key.name} ({key.shown_prefix}): it no longer authenticates.")
    return redirect("apikeys:list")
