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

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from playground.core.api import API_PREFIX, error_message, error_response
from playground.core.services import UserError, error_status


class UserErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, UserError):
            return None  # a bug: Django's 500 page and the log
        status = error_status(exc)
        if request.path.startswith(API_PREFIX) or "application/json" in request.headers.get("Accept", ""):
            return error_response(exc)
        message = error_message(exc)
        if getattr(
            request, "htmx", False
        ):  # htmx swaps only a 2xx: the alert goes where the answer was going
            alert = render_to_string("core/user_error.html#alert", {"message": message}, request=request)
            return HttpResponse(alert, headers={"X-User-Error": str(status)})
        context = {"message": message, "status": status}
        page = render_to_string("core/user_error.html", context, request=request)
        return HttpResponse(page, status=status)
