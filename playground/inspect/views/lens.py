from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from playground.core.views import coming_soon


def page(request: HttpRequest) -> HttpResponse:
    return coming_soon(request, "logit-lens")


urlpatterns = [
    path("logit-lens/", page, name="logit-lens"),
]
