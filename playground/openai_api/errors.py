"""Errors of the OpenAI-compatible API, in OpenAI's own shape.

Every refusal is `{"error": {"message", "type", "param", "code"}}` with its 4xx status, which the official
SDKs turn into their exception types by status (400 BadRequestError, 401 AuthenticationError, 403
PermissionDeniedError, 404 NotFoundError, 429 RateLimitError). Any user-facing error of the site (a
PlaygroundError from the API keys, the catalog's ModelNotFound, llmcore's UserError) is answered here the
same way, so nothing a client sends produces a 5xx.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import JsonResponse

from playground.core.api import error_message
from playground.core.services import PlaygroundError, UserError, error_status

# What OpenAI calls each kind of refusal; a status not listed is an invalid request below 500.
ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
    503: "server_error",
}
DEFAULT_CODES = {
    401: "invalid_api_key",
    404: "not_found",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    503: "engine_unavailable",
}


class OpenAIError(PlaygroundError):
    """A request the API refuses: the sentence, its status, the body field at fault (`param`, as
    OpenAI names it: "messages", "max_tokens") and a machine-readable `code` ("model_not_found")."""

    def __init__(
        self, message: str, status: int = 400, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, status)
        self.message, self.param, self.code = message, param, code


def error_object(exc: UserError) -> dict[str, Any]:
    status = error_status(exc)
    code = getattr(exc, "code", None) or DEFAULT_CODES.get(status)
    if status == 404 and getattr(exc, "name", None) is not None:  # the catalog's ModelNotFound
        code = "model_not_found"
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {
        "error": {
            "message": error_message(exc),
            "type": kind,
            "param": getattr(exc, "param", None) or ("model" if code == "model_not_found" else None),
            "code": code,
        }
    }


def error_response(exc: UserError) -> JsonResponse:
    response = JsonResponse(error_object(exc), status=error_status(exc))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:  # a limit (API keys): when to try again, as HTTP and the SDKs read it
        response["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    return response


def error_event(exc: UserError) -> bytes:
    """An error after a stream's headers went out (200 by then): one server-sent event with the error
    object, which the SDKs raise as an APIError, then the end of the stream."""
    return f"data: {json.dumps(error_object(exc))}\n\ndata: [DONE]\n\n".encode()
