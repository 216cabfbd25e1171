"""One catalog snapshot per request (see catalog.services.one_snapshot)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from playground.catalog.services import one_snapshot


def catalog_snapshot(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        with one_snapshot():
            return get_response(request)

    return middleware
