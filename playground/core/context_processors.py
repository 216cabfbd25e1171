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
        "url": "inspect:tokenize",
        "about": "See text become tokens, IDs and embeddings, step by step.",
    },
    {
        "key": "attention",
        "label": "Attention",
        "url": "inspect:attention",
        "about": "Attention maps for every layer and head, causal and bidirectional.",
    },
    {
        "key": "next-token",
        "label": "Next token",
        "url": "inspect:next-token",
        "about": "The next-token distribution through each sampler stage: temperature, top-k, top-p, min-p.",
    },
    {
        "key": "logit-lens",
        "label": "Logit lens",
        "url": "inspect:logit-lens",
        "about": "What the model would predict at every layer, for every position.",
    },
    {
        "key": "chat",
        "label": "Chat",
        "url": "chat:index",
        "about": "Streaming chat with every sampler setting, history and a token-level inspector.",
    },
    {
        "key": "engine",
        "label": "Engine",
        "url": "engine:page",
        "about": "Live engine numbers per model and worker: sequences, KV cache, prefix cache, tokens/s.",
    },
    {
        "key": "accelerate",
        "label": "Accelerate",
        "url": "accelerate:page",
        "about": "Experiments with plots: batching, prefix cache, speculative decoding, attention kernels.",
    },
    {
        "key": "jobs",
        "label": "Jobs",
        "url": "jobs:list",
        "about": "Fine-tune, distill and quantize models on Celery workers, with live progress.",
    },
    {
        "key": "evaluate",
        "label": "Evaluate",
        "url": "evaluate:list",
        "about": "Evaluation suites (question answering, translation, instruction following...); runs next.",
    },
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    match = getattr(request, "resolver_match", None)
    current = ""
    if match is not None:
        current = match.kwargs.get("section") or {
            "catalog": "models",
            "chat": "chat",
            "jobs": "jobs",
            "engine": "engine",
            "accelerate": "accelerate",
            "apikeys": "keys",
            "evaluate": "evaluate",
        }.get(match.namespace, "")
        if match.namespace == "inspect":
            # A tool's JSON and partial routes are named after it: "tokenize", "tokenize-api"...
            current = next((i["key"] for i in NAV_ITEMS if (match.url_name or "").startswith(i["key"])), "")
    return {"nav_items": NAV_ITEMS, "nav_current": current}
