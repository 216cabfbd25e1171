from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from playground.catalog.services import ModelNotFound, get_visible_model
from playground.core import security, services
from playground.core.context_processors import NAV_ITEMS
from playground.core.http import Request


@login_not_required
@never_cache
@require_GET
def healthz(request: Request) -> JsonResponse:
    """Every part's state for monitors; the details only for a logged-in user or the HEALTHZ_TOKEN."""
    ok, report = services.health()
    if not services.may_see_health_details(request):
        report = services.health_summary(report)
    elif request.user.is_authenticated:  # a private model's name is its owner's, like the model
        report["loaded_models"] = [
            m for m in report["loaded_models"] if may_see_model(request.user, m["name"])
        ]
    return JsonResponse(report, status=200 if ok else 503)


@login_not_required
@never_cache
def login_link(request: Request, token: str) -> HttpResponse:
    """Log in with a one-time link, as printed by `make run` or `manage.py login_link`."""
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405)
    # Tokens cannot be guessed, but an address that keeps trying bad ones is throttled like bad passwords.
    if not security.login_link_allowed(request):
        return security.lockout_response(request)
    user = services.user_for_login_link(token)
    if user is None:
        security.record_bad_login_link(request)
    if request.method == "GET":
        # A GET only shows a button: link previewers and prefetchers must not spend the link.
        valid = user is not None
        return render(request, "core/login_link.html", {"valid": valid}, status=200 if valid else 400)
    if user is None:
        messages.error(request, "This login link has expired or was already used. Ask for a new one.")
        return redirect("login")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("catalog:list")


@require_GET
def home(request: Request) -> HttpResponse:
    return redirect("catalog:list")


@require_GET
def coming_soon(request: Request, section: str) -> HttpResponse:
    item = next((i for i in NAV_ITEMS if i["key"] == section), None)
    return render(request, "core/coming_soon.html", {"item": item})


def may_see_model(user: Any, name: str) -> bool:
    try:
        get_visible_model(user, name)
    except ModelNotFound:
        return False
    return True
