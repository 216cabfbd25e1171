"""Compare a model with its parent: the same fixed prompts through both (greedy, side by side) and the
held-out loss and perplexity of each, on the project's held-out text."""

from __future__ import annotations

from typing import Any

from llmcore import evaluate
from llmcore.store import StoreError
from playground.core.services import PlaygroundError, model_cache, model_store

PROMPTS = evaluate.DEFAULT_PROMPTS[:3]
MAX_NEW_TOKENS = 32
MAX_TOKENS = 1024  # held-out tokens scored per model: enough for a stable number, quick on a CPU


class CompareError(PlaygroundError):
    """The comparison cannot be made; the message is for the user."""


def parent_of(name: str) -> str:
    store = model_store()
    try:
        exists = store.exists(name)
    except StoreError:  # not a valid model name: nothing to compare
        exists = False
    if not exists:
        raise CompareError(f"No model named {name!r}.")
    parent = store.meta(name).parent
    if not parent or not store.exists(parent):
        raise CompareError(f"{name} has no parent in the catalog to compare with.")
    return parent


def compare_with_parent(name: str) -> dict[str, Any]:
    """{"child": name, "parent": ..., "numbers": {model: {loss, perplexity, tokens}}, "rows": [...]}."""
    parent = parent_of(name)
    text = evaluate.heldout_text()
    numbers, outputs = {}, {}
    for model_name in (parent, name):
        loaded = model_cache().get(model_name)
        numbers[model_name] = evaluate.perplexity(loaded, text, max_tokens=MAX_TOKENS)
        outputs[model_name] = [
            evaluate.greedy_answer(loaded.model, loaded.tokenizer, p, MAX_NEW_TOKENS, loaded.model_inputs)
            for p in PROMPTS
        ]
    rows = [
        {"prompt": prompt, "parent": outputs[parent][i], "child": outputs[name][i]}
        for i, prompt in enumerate(PROMPTS)
    ]
    return {"child": name, "parent": parent, "numbers": numbers, "rows": rows}
