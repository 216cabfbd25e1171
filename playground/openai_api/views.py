"""The OpenAI-compatible API at /v1, as async views on the ASGI server (Daphne).

Each view authenticates (an API key, or the browser's session with its CSRF token: services.caller_of),
checks the body (services.check_*, the database's side), prepares the engine's requests off the event
loop (services.prepare: a model's first use loads it), takes the key's admission (its limits) and answers
with one JSON object or a stream of server-sent events. Every refusal is OpenAI's error object with its
4xx (errors.py); a client that disconnects cancels its generation (services.streams).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.core.api import json_body
from playground.core.services import UserError
from playground.openai_api import services
from playground.openai_api.errors import OpenAIError, error_response

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def openai_endpoint(view: View) -> View:
    """Open to API keys as well as sessions (no login redirect, no CSRF middleware: caller_of checks a
    session's token itself), and every user-facing error answered in OpenAI's shape."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            caller = await database_sync_to_async(services.caller_of)(request)
            return await view(request, caller, *args, **kwargs)
        except UserError as exc:
            return error_response(exc)

    return csrf_exempt(login_not_required(wrapper))


def body_of(request: HttpRequest) -> dict[str, Any]:
    try:
        return json_body(request)
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
        raise OpenAIError(f"The request body is over the limit of {limit:,} bytes; send less.", 413) from None


@require_GET
@openai_endpoint
async def models(request: HttpRequest, caller: services.Caller) -> HttpResponseBase:
    return JsonResponse(await database_sync_to_async(services.model_list)(caller.user))


@require_GET
@openai_endpoint
async def model(request: HttpRequest, caller: services.Caller, model_id: str) -> HttpResponseBase:
    return JsonResponse(await database_sync_to_async(services.model_detail)(caller.user, model_id))


@require_POST
@openai_endpoint
async def chat_completions(request: HttpRequest, caller: services.Caller) -> HttpResponseBase:
    checked = await database_sync_to_async(services.check_chat)(caller.user, body_of(request))
    return await generate(caller, checked)


@require_POST
@openai_endpoint
async def completions(request: HttpRequest, caller: services.Caller) -> HttpResponseBase:
    checked = await database_sync_to_async(services.check_completion)(caller.user, body_of(request))
    return await generate(caller, checked)


async def generate(caller: services.Caller, checked: Any) -> HttpResponseBase:
    generation = await sync_to_async(services.prepare, thread_sensitive=False)(checked)
    admission = await database_sync_to_async(services.admit)(caller, stream=generation.stream)
    run = services.Run(generation)
    if generation.stream:  # the admission is held (a stream slot) until the stream ends
        response = StreamingHttpResponse(run.sse(admission), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy in front must not hold the events back
        return response
    async with admission:
        return JsonResponse(await run.response(admission))


@require_POST
@openai_endpoint
async def embeddings(request: HttpRequest, caller: services.Caller) -> HttpResponseBase:
    checked = await database_sync_to_async(services.check_embeddings)(caller.user, body_of(request))
    admission = await database_sync_to_async(services.admit)(caller, stream=False)
    async with admission:
        result = await sync_to_async(services.embeddings, thread_sensitive=False)(checked)
        await admission.arecord(checked.model, result["usage"]["prompt_tokens"], 0)
    return JsonResponse(result)


@require_http_methods(["GET", "POST"])
@openai_endpoint
async def unknown(request: HttpRequest, caller: services.Caller, rest: str) -> HttpResponseBase:
    """Any other address under /v1: OpenAI's 404, not the site's page."""
    raise OpenAIError(f"Unknown endpoint: {request.method} /v1/{rest}.", 404, code="unknown_url")
