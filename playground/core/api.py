"""Small helpers for the JSON endpoints: parse a JSON body, validate it with a Form, answer errors as JSON.

Endpoints sit behind login like every page; POSTs need the CSRF token (a script sends the `csrftoken`
cookie's value in an X-CSRFToken header), so the same session that browses can script.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.fields = message, status, fields or {}


def json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
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
    """Turn ApiError into a JSON error response; a dict result becomes a JSON response."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            result = view(request, *args, **kwargs)
        except ApiError as exc:
            return JsonResponse({"error": exc.message, "fields": exc.fields}, status=exc.status)
        return JsonResponse(result) if isinstance(result, dict) else result

    return wrapper
