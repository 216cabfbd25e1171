"""Who calls /v1 and what they may spend: an API key (`Authorization: Bearer <key>`, playground.apikeys)
or the browser's session.

With a key the request needs no CSRF token (a script sends no cookie, so no other site can make a browser
send the key); with only the session cookie a POST still needs it, as every form of the site does.
Neither answers 401 in OpenAI's shape, never the login page's redirect.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from playground.apikeys import services as apikeys
from playground.apikeys.models import ApiKey
from playground.openai_api.errors import OpenAIError


@dataclass(frozen=True)
class Caller:
    user: Any
    key: ApiKey | None = None  # None: the browser's session


def caller_of(request: HttpRequest) -> Caller:
    """The key's owner, or the session's user; 401 when there is neither (a bad key: 401 too)."""
    key = apikeys.authenticate(request)
    if key is not None:
        return Caller(key.owner, key)
    user = request.user
    if not user.is_authenticated:
        raise OpenAIError(
            "No API key: send one as 'Authorization: Bearer <key>' (make one at /keys/), or log in.",
            401,
            code="missing_api_key",
        )
    if request.method == "POST" and csrf_refused(request):
        raise OpenAIError(
            "A request that logs in with the session cookie needs the CSRF token (the csrftoken cookie's "
            "value in an X-CSRFToken header); a script should send an API key instead.",
            403,
            code="csrf_failed",
        )
    return Caller(user)


def csrf_refused(request: HttpRequest) -> bool:
    """Django's own CSRF check (the views are exempt from the middleware so that a key needs none)."""
    check = CsrfViewMiddleware(lambda _: HttpResponse())
    return check.process_view(request, lambda _: HttpResponse(), (), {}) is not None


class SessionAdmission:
    """A session's request: no key, so no key's limits, and no usage to add to a key."""

    def record(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        pass

    async def arecord(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        pass

    async def __aenter__(self) -> SessionAdmission:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


def admit(caller: Caller, *, stream: bool) -> apikeys.Admission | SessionAdmission:
    """The key's admission (429 with Retry-After past one of its limits; a stream holds a slot until the
    admission's `async with` exits), or a session's."""
    if caller.key is None:
        return SessionAdmission()
    return apikeys.admit(caller.key, stream=stream)
