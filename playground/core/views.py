from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from playground.core import services
from playground.core.context_processors import NAV_ITEMS


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    ok, report = services.health()
    return JsonResponse(report, status=200 if ok else 503)


@login_not_required
@never_cache
def login_link(request: HttpRequest, token: str) -> HttpResponse:
    """Log in with a one-time link, as printed by `make run` or `manage.py login_link`."""
    if request.method == "GET":
        # A GET only shows a button: link previewers and prefetchers must not spend the link.
        valid = services.user_for_login_link(token) is not None
        return render(request, "core/login_link.html", {"valid": valid}, status=200 if valid else 400)
    if request.method != "POST":
        return HttpResponse(status=405)
    user = services.user_for_login_link(token)
    if user is None:
        messages.error(request, "This login link has expired or was already used. Ask for a new one.")
        return redirect("login")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("catalog:list")


def home(request: HttpRequest) -> HttpResponse:
    return redirect("catalog:list")


def coming_soon(request: HttpRequest, section: str) -> HttpResponse:
    item = next((i for i in NAV_ITEMS if i["key"] == section), None)
    return render(request, "core/coming_soon.html", {"item": item})
