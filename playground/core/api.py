"""Small helpers for the JSON endpoints: parse a JSON body, validate it with a Form, answer errors as JSON.

Endpoints sit behind login like every page; POSTs need the CSRF token (a script sends the `csrftoken`
cookie's value in an X-CSRFToken header), so the same session that browses can script.

Whatever a script sends is answered in JSON, {"error": "...", "fields": {...}}, with a 4xx: a body that is
not JSON, nests too deeply (llmcore.text) or is over Django's DATA_UPLOAD_MAX_MEMORY_SIZE (413, from
api_body_limit, before the CSRF check would read it and answer Django's HTML page), and any user-facing
error (llmcore.errors.UserError) the view raises, with its status (core.services.error_status).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from playground.core.services import PlaygroundError, UserError, error_status
from playground.core.text import JsonTooDeep, loads_json

API_PREFIX = "/api/"


class ApiError(PlaygroundError):
    """A request the API refuses, with the fields at fault (a form's errors) when there are any."""

    def __init__(self, message: str, status: int = 400, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message, status)
        self.message, self.fields = message, fields or {}


def json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = loads_json(request.body or b"{}")
    except JsonTooDeep as exc:
        raise ApiError(str(exc)) from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError("The request body must be a JSON object.")
    return data


def validated(form_class: type[forms.Form], data: Any, **form_kwargs: Any) -> dict[str, Any]:
    """The form's cleaned data, or an ApiError listing what is wrong with each field. `form_kwargs` go
    to the form (user=..., for the models that user may pick)."""
    form = form_class(data, **form_kwargs)
    if not form.is_valid():
        fields = {name: [str(e) for e in errors] for name, errors in form.errors.items()}
        first = next(iter(fields.values()))[0] if fields else "Invalid input."
        raise ApiError(first, fields=fields)
    return form.cleaned_data


def api_view(view: Callable[..., Any]) -> Callable[..., HttpResponse]:
    """Answer any user-facing error (ApiError, an app's PlaygroundError, llmcore's UserError) as JSON
    with its status; a dict result becomes a JSON response."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            result = view(request, *args, **kwargs)
        except UserError as exc:
            return error_response(exc)
        return JsonResponse(result) if isinstance(result, dict) else result

    return wrapper


def error_response(exc: UserError) -> JsonResponse:
    return error_json(error_message(exc), error_status(exc), getattr(exc, "fields", None) or {})


def error_json(message: str, status: int, fields: dict[str, Any] | None = None) -> JsonResponse:
    """Every JSON error of the site: {"error": the sentence, "fields": {field: [errors]}}."""
    return JsonResponse({"error": message, "fields": fields or {}}, status=status)


def error_message(exc: UserError) -> str:
    """The sentence for the person, as the error says it (a message that ends in a quoted name keeps
    its quote)."""
    return str(getattr(exc, "message", None) or exc)


def api_body_limit(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Middleware: a body over DATA_UPLOAD_MAX_MEMORY_SIZE sent to /api/ is answered 413 in JSON.

    Django refuses such a body when something first reads it, with its HTML 400 page (the debug page in
    development); reading it here, before the CSRF check does, keeps the endpoints' documented answer.
    Forms keep Django's page.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            try:
                request.body  # noqa: B018 - read (and keep) the body now, where its size can be answered
            except RequestDataTooBig:
                limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
                message = f"The request body is over the limit of {limit:,} bytes; send less."
                return error_response(ApiError(message, status=413))
        return get_response(request)

    return middleware
