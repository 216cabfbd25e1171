from __future__ import annotations

from typing import Any

from django.http import HttpRequest

# The site's sections, in navigation order. `url` is a URL name; sections still to be built point at
# the coming-soon page with their key and say what they will do.
NAV_ITEMS: list[dict[str, Any]] = [
    {
        "key": "models",
        "label": "Models",
        "url": "catalog:list",
        "about": "Every model in the store with the facts people compare, and its lineage.",
    },
    {
        "key": "tokenize",
        "label": "Tokenizer",
        "url": "tokenize",
        "about": "See text become tokens, IDs and embeddings, step by step.",
    },
    {
        "key": "attention",
        "label": "Attention",
        "url": "attention",
        "about": "Attention maps for every layer and head, next-token distributions and the logit lens.",
    },
    {
        "key": "chat",
        "label": "Chat",
        "url": "chat",
        "about": "Streaming chat with every sampler setting, history and a token-level inspector.",
    },
    {
        "key": "jobs",
        "label": "Jobs",
        "url": "jobs",
        "about": "Fine-tune, distill and quantize models on Celery workers, with live progress.",
    },
    {
        "key": "evaluate",
        "label": "Evaluate",
        "url": "evaluate",
        "about": "Perplexity, task metrics and side-by-side comparison of models.",
    },
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    match = getattr(request, "resolver_match", None)
    current = ""
    if match is not None:
        current = match.kwargs.get("section") or ("models" if match.namespace == "catalog" else "")
    return {"nav_items": NAV_ITEMS, "nav_current": current}
