"""The one place a page answers a user-facing error that its view did not handle itself.

A view that can do better handles its errors where they arise (a form shown again with the message beside
the field, the user's input kept). Any UserError (llmcore.errors; the web side's PlaygroundError carries
its status) that still leaves a view is answered here with its 4xx status, never a 500: in JSON under
/api/ and for scripts (core.api answers its own the same way), as a small alert for an htmx request
(with a 200, as every htmx answer of the site: htmx swaps nothing of a 4xx; `X-User-Error` carries the
status), and as a page otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string

from playground.core.api import API_PREFIX, error_json, error_message
from playground.core.services import UserError, error_status

NOT_FOUND = "There is nothing at this address."


class UserErrorMiddleware:
    """Also the site's own 404 and 403 in every mode: with DEBUG on (`make run`), Django would answer an
    unknown address or a missing object with its technical page, which lists the site's URL patterns."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == 404
            and settings.DEBUG
            and getattr(request, "resolver_match", None) is None
        ):
            return answer(
                request, NOT_FOUND, 404, {}, htmx_ok=False
            )  # no route: Django's debug page otherwise
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        # Not found and not allowed keep their status for htmx too: htmx then swaps nothing, so what
        # the page shows stays (another user's object must not wipe the conversation with an alert).
        if isinstance(exc, Http404):  # views name what is missing, often without the closing period
            return answer(request, sentence(str(exc)) or NOT_FOUND, 404, {}, htmx_ok=False)
        if isinstance(exc, PermissionDenied):
            return answer(request, str(exc) or "You may not do that.", 403, {}, htmx_ok=False)
        if not isinstance(exc, UserError):
            return None  # a bug: Django's 500 page and the log
        return answer(request, error_message(exc), error_status(exc), getattr(exc, "fields", None) or {})


def answer(
    request: HttpRequest, message: str, status: int, fields: dict[str, object], htmx_ok: bool = True
) -> HttpResponse:
    """`htmx_ok`: an htmx request gets the alert with a 200 (htmx swaps only a 2xx: the alert goes where
    the answer was going), else with its own status (nothing is swapped)."""
    if request.path.startswith(API_PREFIX) or "application/json" in request.headers.get("Accept", ""):
        return error_json(message, status, fields)
    if getattr(request, "htmx", False):
        alert = render_to_string("core/user_error.html#alert", {"message": message}, request=request)
        return HttpResponse(alert, status=200 if htmx_ok else status, headers={"X-User-Error": str(status)})
    context = {"message": message, "status": status}
    page = render_to_string("core/user_error.html", context, request=request)
    return HttpResponse(page, status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404 (DEBUG off): an address no route matches, as the rest of the site answers it."""
    return answer(request, NOT_FOUND, 404, {}, htmx_ok=False)


def sentence(text: str) -> str:
    """The text as a sentence: with its closing period when it has no closing mark."""
    text = text.strip()
    return text if not text or text[-1] in ".!?" else f"{text}."
