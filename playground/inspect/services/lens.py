"""The logit lens for the page and the API."""

from __future__ import annotations

from typing import Any

from llmcore.lens import LensError, encode_prompt, logit_lens
from llmcore.store import StoreError
from llmcore.tokenize import token_display
from playground.inspect.forms_sampling import LENS_MAX_TOKENS
from playground.inspect.services.common import InspectError, get_loaded


def run_lens(model: str, text: str, as_chat: bool, user: Any = None) -> dict[str, Any]:
    try:
        loaded = get_loaded(model, user)
        ids = encode_prompt(loaded, text, as_chat)
        if len(ids) > LENS_MAX_TOKENS:
            raise InspectError(
                f"The prompt is {len(ids)} tokens long; "
                f"the logit lens shows at most {LENS_MAX_TOKENS} positions."
            )
        result = logit_lens(loaded, ids)
    except (LensError, LookupError, StoreError) as exc:  # StoreError: a model whose files do not load
        raise InspectError(str(exc)) from None
    tok = loaded.tokenizer
    rows = []
    # Output layer first: the page reads top-down from the answer to the embeddings.
    for layer in range(result.layers, -1, -1):
        cells = []
        for position, cell in enumerate(result.grid[layer]):
            cells.append(
                {
                    "token": token_display(tok, cell.token_id),
                    "prob": round(cell.prob, 4),
                    "top": [{"token": token_display(tok, i), "prob": round(p, 4)} for i, p in cell.top],
                    "settles_here": result.settled_at[position] == layer,
                }
            )
        rows.append({"layer": layer, "label": _layer_label(layer, result.layers), "cells": cells})
    return {
        "model": model,
        "layers": result.layers,
        "tokens": [token_display(tok, i) for i in ids],
        "rows": rows,
        "settled_at": result.settled_at,
    }


def _layer_label(layer: int, last: int) -> str:
    if layer == 0:
        return "embeddings"
    return f"layer {layer}" + (" (output)" if layer == last else "")
