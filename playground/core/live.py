"""A page block that htmx polls, answered 204 while nothing on it changed.

The page template has a `live` partial (the polling element, carrying `live_version` in hx-vals and
`live_body` inside) and a `live-body` partial (what it shows). Each poll renders the body, versions it
by its hash, and answers 204 when the poll's version is the same: htmx then leaves the block, and any
plot or open menu in it, as it is. The Jobs, Accelerate and Engine pages use it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from playground.core.http import Request

# A form's CSRF token is masked afresh on every render: it must not make every poll a change.
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')


def live_page(request: Request, template: str, context: dict[str, Any]) -> HttpResponse:
    """The whole page, its `live` partial for an htmx poll, or 204 when the poll's version `v` is the
    block's version now."""
    body = render_to_string(f"{template}#live-body", context, request=request)
    version = hashlib.sha256(CSRF_INPUT.sub("", body).encode()).hexdigest()[:16]
    if request.htmx and request.GET.get("v") == version:
        return HttpResponse(status=204)
    # body is this project's own template, rendered with autoescaping on: safe to insert as it is.
    context = {**context, "live_body": mark_safe(body), "live_version": version}  # noqa: S308
    return render(request, f"{template}#live" if request.htmx else template, context)
