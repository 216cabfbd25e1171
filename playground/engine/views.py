"""The Engine page (live through htmx polling) and the same numbers as Prometheus text at /metrics."""

from __future__ import annotations

import hashlib

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from playground.core.http import Request
from playground.engine import prometheus, services


@never_cache
@require_GET
def engine_page(request: Request) -> HttpResponse:
    overview = services.hide_private_models(services.engine_overview(), request.user)
    context = {"overview": overview, "snapshot_ttl": services.SNAPSHOT_TTL}
    body = render_to_string("engine/page.html#live-body", context, request=request)
    version = hashlib.sha256(body.encode()).hexdigest()[:16]
    if request.htmx and request.GET.get("v") == version:
        return HttpResponse(status=204)  # nothing changed: htmx leaves the block as it is
    # body is this project's own template, rendered with autoescaping on: safe to insert as it is.
    context |= {"live_body": mark_safe(body), "live_version": version}  # noqa: S308
    return render(request, "engine/page.html#live" if request.htmx else "engine/page.html", context)


@login_not_required  # a monitor sends METRICS_TOKEN instead; strangers get 401, never the numbers
@never_cache
@require_GET
def metrics(request: Request) -> HttpResponse:
    if not services.may_read_metrics(request):
        response = HttpResponse(
            "Log in, or send METRICS_TOKEN as Authorization: Bearer <token>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    overview = services.engine_overview()
    if request.user.is_authenticated:  # a monitor's token sees every engine, as at /healthz
        overview = services.hide_private_models(overview, request.user)
    return HttpResponse(prometheus.exposition(overview), content_type=prometheus.CONTENT_TYPE)
