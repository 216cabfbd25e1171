"""The Engine page (live through htmx polling) and the same numbers as Prometheus text at /metrics."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from playground.core.http import Request
from playground.core.live import live_page
from playground.engine import prometheus, services


@never_cache
@require_GET
def engine_page(request: Request) -> HttpResponse:
    overview = services.hide_private_models(services.engine_overview(), request.user)
    context = {"overview": overview, "snapshot_ttl": services.SNAPSHOT_TTL}
    return live_page(request, "engine/page.html", context)


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
