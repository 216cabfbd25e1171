"""The attention explorer: a page that captures attention (htmx POST -> meta in a partial) and the JSON and
binary endpoints its script, or anyone's script, reads the weights from."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.core.api import ApiError, api_view, json_body, validated
from playground.core.http import Request
from playground.core.services import UserError
from playground.core.text import TextField
from playground.inspect.forms import ModelNameField, UserModelsForm
from playground.inspect.services import attention as services
from playground.inspect.services.common import default_model_name, model_choices


class AttentionForm(UserModelsForm):
    text = TextField(strip=False, widget=forms.Textarea)
    model = ModelNameField()
    as_chat = forms.BooleanField(required=False)

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        if not text.strip():
            raise forms.ValidationError("Type some text to look at.")
        if len(text) > settings.INSPECT_MAX_CHARS:
            raise forms.ValidationError(
                f"The text is {len(text):,} characters; the limit is {settings.INSPECT_MAX_CHARS:,}."
            )
        return text


class AttentionPageForm(AttentionForm):
    compare = ModelNameField(required=False)


def initial_model(user: Any, asked: str | None = None) -> str | None:
    """The model a link asked for (?model=, e.g. a job's output) when this user may use it; else the
    default model, else the first causal one: a page should open on a model with a causal mask."""
    choices = model_choices(user)
    if asked and asked in {name for name, _ in choices}:
        return asked
    default = default_model_name(user)
    causal = [name for name, _ in model_choices(user, causal_only=True)]
    return default if default in causal or not causal else causal[0]


@require_http_methods(["GET", "POST"])
def page(request: Request) -> HttpResponse:
    posted = request.method == "POST"
    form = AttentionPageForm(
        request.POST if posted else None,
        initial={"model": initial_model(request.user, request.GET.get("model"))},
        user=request.user,
    )
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    if posted:
        if form.is_valid():
            data = form.cleaned_data
            names = [data["model"], *([data["compare"]] if data["compare"] else [])]
            try:
                for name in names:
                    results.append(services.run_attention(request.user, name, data["text"], data["as_chat"]))
            except UserError as exc:
                errors.append(str(exc))
        else:
            errors = [str(e) for field_errors in form.errors.values() for e in field_errors]
    htmx = bool(getattr(request, "htmx", False))
    context = {
        "form": form,
        "panels": [{"dom_id": f"attention-meta-{i}", "meta": meta} for i, meta in enumerate(results)],
        "errors": errors,
        "choices": model_choices(request.user),
        "max_tokens": settings.INSPECT_MAX_TOKENS,
        "max_chars": settings.INSPECT_MAX_CHARS,
    }
    # htmx swaps only 2xx answers, so it gets its errors with a 200; a plain form post gets a 400.
    status = 400 if errors and not htmx else 200
    template = "inspect/attention.html#results" if htmx and posted else "inspect/attention.html"
    return render(request, template, context, status=status)


# --- JSON and binary API ------------------------------------------------------------------------------
@require_POST
@api_view
def api_run(request: Request) -> dict[str, Any]:
    data = validated(AttentionForm, json_body(request), user=request.user)
    # api_view answers what cannot be captured: 400, or 503 while other captures hold every slot
    return services.run_attention(request.user, data["model"], data["text"], data["as_chat"])


def _capture(request: Request, capture_id: str) -> services.AttentionCapture:
    return services.find_capture(request.user.pk, capture_id)  # CaptureGone: 404


def _binary(body: bytes, shape: tuple[int, ...], dtype: str) -> HttpResponse:
    response = HttpResponse(body, content_type="application/octet-stream")
    response["X-Attention-Shape"] = ",".join(str(n) for n in shape)
    response["X-Attention-Dtype"] = dtype
    # A capture never changes under its id: the browser may keep what it fetched for the session.
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
@api_view
def api_meta(request: Request, capture_id: str) -> dict[str, Any]:
    return services.capture_meta(_capture(request, capture_id))


@require_GET
@api_view
def api_overview(request: Request, capture_id: str) -> HttpResponse:
    capture = _capture(request, capture_id)
    return _binary(capture.overview_bytes(), tuple(capture.overview.shape), "uint8")


@require_GET
@api_view
def api_head(request: Request, capture_id: str, layer: int, head: int) -> HttpResponse:
    capture = _capture(request, capture_id)
    try:
        body = capture.head_bytes(layer, head)
    except IndexError as exc:
        raise ApiError(str(exc), status=404) from None
    return _binary(body, (capture.num_tokens, capture.num_tokens), "float16")


@require_GET
@api_view
def api_mean(request: Request, capture_id: str, layer: int) -> HttpResponse:
    capture = _capture(request, capture_id)
    try:
        body = capture.mean_bytes(layer)
    except IndexError as exc:
        raise ApiError(str(exc), status=404) from None
    return _binary(body, (capture.num_tokens, capture.num_tokens), "float16")
