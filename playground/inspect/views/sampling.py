"""The next-token and sampling explorer: /next-token/ and POST /api/next-token."""

from __future__ import annotations

import math
from typing import Any

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from playground.core.api import api_view, json_body, validated
from playground.core.http import Request
from playground.core.services import sampler_rows
from playground.inspect.forms_sampling import NextTokenForm, with_defaults
from playground.inspect.services.common import InspectError, default_model_name
from playground.inspect.services.sampling import run_explorer

EXAMPLE_PROMPT = "The capital of France is"
# The cumulative curve's drawing box inside its SVG viewBox.
PLOT_X0, PLOT_X1, PLOT_Y0, PLOT_Y1 = 40, 410, 190, 10


def curve_geometry(curve: dict[str, Any]) -> dict[str, Any]:
    """SVG coordinates for the cumulative curve: ranks on a log axis, probability up."""
    n = len(curve["points"])
    span = math.log10(max(n, 2))

    def x(rank: int) -> float:
        return round(PLOT_X0 + (PLOT_X1 - PLOT_X0) * math.log10(rank) / span, 1)

    def y(p: float) -> float:
        return round(PLOT_Y0 - (PLOT_Y0 - PLOT_Y1) * p, 1)

    points = " ".join(f"{x(r)},{y(p)}" for r, p in enumerate(curve["points"], start=1))
    cut = curve["cut_rank"]
    return {"points": points, "top_p_y": int(y(curve["top_p"])), "cut_x": x(cut) if 1 <= cut <= n else None}


@require_http_methods(["GET", "POST"])
def page(request: Request) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    initial = {"model": default_model_name(request.user), "text": EXAMPLE_PROMPT}
    form = NextTokenForm(with_defaults({**initial, **source.dict()}), user=request.user)
    result, error = None, None
    if form.is_valid():
        try:
            result = run_explorer(form.cleaned_data, draw="sample" in source, user=request.user)
            result["curve"]["geometry"] = curve_geometry(result["curve"])
        except InspectError as exc:
            error = str(exc)
    sliders = [{**row, "field": form[row["name"]]} for row in sampler_rows()]
    context = {"form": form, "result": result, "error": error, "sliders": sliders}
    if not request.htmx:
        return render(request, "inspect/next_token.html", context, status=200 if form.is_valid() else 400)
    if not form.is_valid():
        # Each error beside its field; the last result stays, marked stale. A 200, as every htmx answer
        # here: htmx swaps nothing of a 4xx (the page without JavaScript and the API get their 400).
        response = render(request, "inspect/next_token.html#field-errors", context)
        response["HX-Reswap"] = "none"
        return response
    result_html = render(request, "inspect/next_token.html#result", context).content.decode()
    cleared = render(request, "inspect/next_token.html#clear-errors", context).content.decode()
    return HttpResponse(result_html + cleared)


@require_POST
@api_view
def api(request: Request) -> dict[str, Any]:
    body = json_body(request)
    data = validated(NextTokenForm, with_defaults(body), user=request.user)
    return run_explorer(data, draw=bool(body.get("sample")), user=request.user)  # InspectError: a 400
