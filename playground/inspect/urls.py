"""Routes of the inspect tools: the tokenizer lab, attention maps, the next-token explorer and the logit
lens, each tool's views in its own module."""

from __future__ import annotations

from django.urls import path

from playground.inspect.views import attention, lens, sampling, tokenize

app_name = "inspect"
urlpatterns = [
    path("tokenize/", tokenize.page, name="tokenize"),
    path("tokenize/chat/", tokenize.chat, name="tokenize-chat"),
    path("tokenize/train/", tokenize.train, name="tokenize-train"),
    path("tokenize/trained/", tokenize.trained, name="tokenize-trained"),
    path("tokenize/trained/<int:pk>/delete/", tokenize.delete, name="tokenize-delete"),
    path("api/tokenize", tokenize.api, name="tokenize-api"),
    path("attention/", attention.page, name="attention"),
    path("api/attention", attention.api_run, name="attention-api"),
    path("api/attention/<str:capture_id>", attention.api_meta, name="attention-capture"),
    path("api/attention/<str:capture_id>/overview", attention.api_overview, name="attention-overview"),
    path(
        "api/attention/<str:capture_id>/layer/<int:layer>/head/<int:head>",
        attention.api_head,
        name="attention-head",
    ),
    path("api/attention/<str:capture_id>/layer/<int:layer>/mean", attention.api_mean, name="attention-mean"),
    path("next-token/", sampling.page, name="next-token"),
    path("api/next-token", sampling.api, name="next-token-api"),
    path("logit-lens/", lens.page, name="logit-lens"),
    path("api/logit-lens", lens.api, name="logit-lens-api"),
]
