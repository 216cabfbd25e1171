"""The chat token inspector's JSON API (the work is in services/inspector.py):

GET /chat/message/<id>/tokens/        every generated token with its display label and probability
GET /chat/message/<id>/token/<i>/     token i: probability, alternatives, context labels, attention rows

Both are owner-scoped (someone else's message reads like a missing one) and answer errors as
{"error": "...", "fields": {}} with a 4xx status (core.api.api_view).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET

from playground.chat.services.inspector import inspected_message, token_json, tokens_payload
from playground.core.api import api_view
from playground.core.http import Request


@require_GET
@api_view
def message_tokens(request: Request, message_id: int) -> dict[str, Any]:
    return tokens_payload(inspected_message(request.user, message_id))


@require_GET
@gzip_page  # 30 x 9 rows of up to 1,024 numbers: about 1.3 MB as JSON, a quarter of that gzipped
@api_view
def message_token(request: Request, message_id: int, index: int) -> HttpResponse:
    body = token_json(inspected_message(request.user, message_id), index)
    return HttpResponse(body, content_type="application/json")
