"""The logit lens: /logit-lens/ and POST /api/logit-lens."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from playground.core.api import api_view, json_body, validated
from playground.core.http import Request
from playground.inspect.forms_sampling import LENS_MAX_TOKENS, PromptForm
from playground.inspect.services.common import InspectError, default_model_name
from playground.inspect.services.lens import run_lens

EXAMPLE_PROMPT = "The Eiffel Tower is in the city of"


@require_http_methods(["GET", "POST"])
def page(request: Request) -> HttpResponse:
    """The page opens at once with the example prompt filled in; the lens runs when asked (a POST, or a
    link that names the prompt: ?text=...), as it takes seconds on a real model."""
    # ?model= (a model page's link) preselects it; a name not among the choices selects nothing of its own
    initial = {"model": request.GET.get("model") or default_model_name(request.user), "text": EXAMPLE_PROMPT}
    if request.method == "POST":
        form = PromptForm(request.POST, user=request.user)
    elif "text" in request.GET:
        form = PromptForm({**initial, **request.GET.dict()}, user=request.user)
    else:
        form = PromptForm(initial=initial, user=request.user)
    result, error = None, None
    if form.is_bound and form.is_valid():
        try:
            data = form.cleaned_data
            result = run_lens(data["model"], data["text"], data["as_chat"], request.user)
        except InspectError as exc:
            error = str(exc)
    template = "inspect/logit_lens.html#result" if request.htmx else "inspect/logit_lens.html"
    context = {"form": form, "result": result, "error": error, "max_tokens": LENS_MAX_TOKENS}
    return render(request, template, context)


@require_POST
@api_view
def api(request: Request) -> dict[str, Any]:
    data = validated(PromptForm, json_body(request), user=request.user)
    return run_lens(data["model"], data["text"], data["as_chat"], request.user)  # InspectError: a 400
