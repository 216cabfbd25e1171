"""The attention explorer's glue: run a capture for a user, keep it in this process's bounded cache, and hand
out its meta and binary pieces. The only module of this tool that imports llmcore.

Captures live in memory in the web process that ran them (float16, about 570 MB for 1024 tokens on the
default model), so the cache is small: a few captures, least recently used first out, within
INSPECT_ATTENTION_CACHE_MB counting every byte they hold. A page whose capture was evicted is told so and
offers to run again. The same cache admits new captures: a few at a time, each with its memory reserved
before its forward pass (CaptureBusy when the server is busy: a 503, try again).
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.urls import reverse

from llmcore.attention import (
    AttentionCapture,
    CaptureBusy,
    CaptureCache,
    capture_attention,
    capture_size,
    prepare_input,
)
from playground.core.services import PlaygroundError
from playground.inspect.services.common import get_loaded

__all__ = [
    "AttentionCapture",
    "CaptureBusy",
    "CaptureGone",
    "capture_meta",
    "find_capture",
    "run_attention",
]

_cache: CaptureCache | None = None
_cache_lock = threading.Lock()
EVICTED = (
    "This capture is no longer kept on the server (only the few most recent runs are kept in memory). "
    "Run it again."
)


class CaptureGone(PlaygroundError, LookupError):
    """The capture id is unknown here: evicted, never made, made by someone else, or in another process."""

    status = 404


class UnknownModel(PlaygroundError, ValueError):
    """The model is not in the catalog (any more)."""


def capture_cache() -> CaptureCache:
    global _cache
    with _cache_lock:  # two first requests at once must not each make a cache
        if _cache is None:
            _cache = CaptureCache(
                max_captures=settings.INSPECT_ATTENTION_CACHE_CAPTURES,
                max_bytes=settings.INSPECT_ATTENTION_CACHE_MB << 20,
                max_running=settings.INSPECT_ATTENTION_CONCURRENT,
            )
        return _cache


def run_attention(user: Any, model_name: str, text: str, as_chat: bool) -> dict[str, Any]:
    """Capture one model's attention over the text; the meta the page and the API answer with. The
    capture is kept for this user only.

    Raises a UserError (llmcore.errors) for input it cannot capture: an unknown model (or one this user
    may not see), text over the limits...
    """
    try:
        loaded = get_loaded(model_name, user)
    except LookupError as exc:
        raise UnknownModel(str(exc)) from None
    context = getattr(loaded.model.config.get_text_config(), "max_position_embeddings", None)
    inp = prepare_input(
        loaded.tokenizer,
        text,
        as_chat=as_chat,
        max_tokens=settings.INSPECT_MAX_TOKENS,
        context_length=context,
        model_name=model_name,
    )
    size = capture_size(loaded.model, len(inp.token_ids))
    with capture_cache().reserve(size.peak, timeout=settings.INSPECT_ATTENTION_WAIT_SECONDS) as room:
        capture = capture_attention(loaded.model, inp, model_name=model_name, is_causal=loaded.is_causal)
        room.keep(capture, user.pk)
    return capture_meta(capture)


def find_capture(owner: Any, capture_id: str) -> AttentionCapture:
    capture = capture_cache().get(capture_id, owner)
    if capture is None:
        raise CaptureGone(EVICTED)
    return capture


def capture_meta(capture: AttentionCapture) -> dict[str, Any]:
    """Everything the page needs to draw, except the weights themselves (those travel as binary)."""
    base = reverse("inspect:attention-capture", args=[capture.capture_id])
    num_layers, num_heads, side = (int(n) for n in capture.overview.shape[:3])
    return {
        "capture_id": capture.capture_id,
        "model": capture.model_name,
        "is_causal": capture.is_causal,
        "as_chat": capture.as_chat,
        "tokens": capture.tokens,
        "token_ids": capture.token_ids,
        "num_tokens": capture.num_tokens,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "num_kv_heads": capture.num_kv_heads,
        "kv_head_of": capture.kv_head_of,
        "forward_seconds": round(capture.forward_seconds, 3),
        "kept_bytes": capture.nbytes,
        "notes": capture.notes,
        "url": base,
        "overview": {
            "url": f"{base}/overview",
            "shape": [num_layers, num_heads, side, side],
            "dtype": "uint8",
            "bin": capture.overview_bin,
            "encoding": "round(255 * sqrt(the largest weight in each bin of `bin` x `bin` tokens))",
            "bytes": int(capture.overview.numel()),
        },
        "head_url": f"{base}/layer/{{layer}}/head/{{head}}",
        "mean_url": f"{base}/layer/{{layer}}/mean",
        "head_shape": [capture.num_tokens, capture.num_tokens],
        "head_dtype": "float16",
        "head_bytes": capture.num_tokens * capture.num_tokens * 2,
    }
