"""Routes of the inspect tools. Each tool's views module owns its routes (`urlpatterns`), so the tools
stay independent of one another."""

from __future__ import annotations

from playground.inspect.views import attention, lens, sampling, tokenize

app_name = "inspect"
urlpatterns = [
    *tokenize.urlpatterns,
    *attention.urlpatterns,
    *sampling.urlpatterns,
    *lens.urlpatterns,
]
