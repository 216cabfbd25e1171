"""The chat token inspector's services, behind its JSON API (chat/views/inspector.py): the tokens of
a saved answer, and for one of them its probability, the alternatives the sampler left, and what the
model's last position attended to at that step (the one query row of every layer and head, recomputed on
demand from the message's stored prompt ids).

Owner-scoped (someone else's message reads like a missing one); a ChatError carries the 4xx status to
answer. Apart from the chat's turn-taking services: nothing here writes or generates.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from django.conf import settings

from llmcore.attention import AttentionInputError, AttentionUnsupported
from llmcore.inspect_token import last_query_attention, step_context
from llmcore.store import StoreError
from llmcore.tokenize import load_pretrained_tokenizer, token_display
from playground.catalog.services import get_visible_model
from playground.chat.models import Message
from playground.chat.services.conversations import ChatError, get_message
from playground.core.services import model_store
from playground.inspect.services.common import get_loaded

# Recent answers of the token endpoint, as JSON bytes (at most about 1.3 MB each): the forward pass is the
# costly part, and a person clicks back and forth between a few tokens. Keyed by message, index and
# weights, so re-pulled weights are recomputed.
CACHE_ENTRIES = 16
_cache: OrderedDict[tuple[int, int, str], bytes] = OrderedDict()
_cache_lock = threading.Lock()


def inspected_message(owner: Any, message_id: int) -> Message:
    """The owner's saved assistant message with its tokens, or a ChatError (with a status) saying why not."""
    try:
        message = get_message(owner, message_id)
    except ChatError as exc:
        raise ChatError(str(exc), status=404) from None
    if message.role != Message.Role.ASSISTANT:
        raise ChatError("Only the model's answers have generated tokens to inspect.")
    if message.status == Message.Status.STREAMING:
        raise ChatError("This answer is still being written: inspect it when it is done.", status=409)
    if not message.tokens:
        raise ChatError("This answer kept no generated tokens.", status=404)
    return message


def remote_host(message: Message) -> str | None:
    """The server that wrote a remote model's answer, or None for a local model's."""
    remote = (message.provenance or {}).get("remote")
    return str(remote.get("host") or "a remote server") if isinstance(remote, dict) else None


def model_of(message: Message) -> str:
    name = str((message.provenance or {}).get("model") or message.conversation.model_name)
    try:
        found = model_store().exists(name)
    except StoreError:  # a name that is not a valid model name can name no model
        found = False
    try:
        if found:  # and still one the answer's owner may use (its owner may have made it private)
            get_visible_model(message.conversation.owner, name)
    except LookupError:
        found = False
    if not found:
        raise ChatError(
            f"The model {name} is no longer in the catalog, so its tokens cannot be read.", status=410
        )
    return name


def labels(model_name: str, ids: list[int]) -> list[str]:
    tokenizer = load_pretrained_tokenizer(model_store().path(model_name))
    return [token_display(tokenizer, int(i)) for i in ids]


def tokens_payload(message: Message) -> dict[str, Any]:
    if remote_host(message):
        return remote_tokens_payload(message)
    name = model_of(message)
    ids = [int(t[0]) for t in message.tokens]
    shown = "".join(t[1] for t in message.tokens)
    return {
        "message": message.pk,
        "model": name,
        "tokens": [
            {"index": i, "id": t[0], "text": t[1], "label": label, "prob": t[2]}
            for i, (t, label) in enumerate(zip(message.tokens, labels(name, ids), strict=True))
        ],
        # Text no token carried (bytes held back at the end): shown after the chips, not clickable.
        "tail": message.content[len(shown) :] if message.content.startswith(shown) else "",
    }


def token_json(message: Message, index: int) -> bytes:
    """Token `index` of the answer as the panel reads it (JSON), from the cache when it was asked lately."""
    if remote_host(message):
        return json.dumps(remote_token_payload(message, index), separators=(",", ":")).encode()
    name = model_of(message)
    sha = model_store().meta(name).sha256
    key = (message.pk, index, sha)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    body = json.dumps(token_payload(message, index, name, sha), separators=(",", ":")).encode()
    with _cache_lock:
        _cache[key] = body
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return body


def token_payload(message: Message, index: int, name: str, sha: str) -> dict[str, Any]:
    generated = [int(t[0]) for t in message.tokens]
    try:
        context = step_context([int(i) for i in message.prompt_ids], generated, index)
    except IndexError as exc:
        raise ChatError(str(exc), status=404) from None
    token_id, text, prob, alternatives = message.tokens[index]
    provenance = message.provenance or {}
    notes = []
    if provenance.get("weights_sha256") not in (None, sha):
        notes.append(f"{name}'s weights changed since this answer: the attention is the current weights'.")
    attention, attention_error = attention_of(name, context, message.conversation.owner)
    return {
        "message": message.pk,
        "index": index,
        "model": name,
        "token": {"id": token_id, "text": text, "label": labels(name, [token_id])[0], "prob": prob},
        # Greedy answers (temperature 0) take the likeliest token with probability 1; their alternatives
        # are the model's own probabilities (see llmcore.engine), which the page says.
        "greedy": (provenance.get("sampling") or {}).get("temperature") in (0, 0.0),
        # [id, label, prob, rank]: the chosen token is among them, with its rank, since ranks were
        # recorded; an older answer's token that ranked below the top ones is missing, which the page says.
        "alternatives": [
            {
                "id": a[0],
                "label": a[1],
                "prob": a[2],
                "rank": a[3] if len(a) > 3 else index_rank,
                "chosen": a[0] == token_id,
            }
            for index_rank, a in enumerate(alternatives, start=1)
        ],
        "chosen_listed": any(a[0] == token_id for a in alternatives),
        "context": {
            "labels": labels(name, context),
            "prompt_tokens": len(message.prompt_ids),
            "generated_before": index,
        },
        "attention": attention,
        "attention_error": attention_error,
        "notes": notes,
    }


def attention_of(name: str, context: list[int], owner: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the attention rows and their shape, None), or (None, why there are none) for a context the
    inspector does not look at; the token and its alternatives are shown either way."""
    try:
        loaded = get_loaded(name, owner)
        step = last_query_attention(loaded, context, max_tokens=settings.INSPECT_MAX_TOKENS)
    except (LookupError, StoreError) as exc:  # gone from the catalog since model_of looked
        raise ChatError(str(exc), status=410) from None
    except (AttentionInputError, AttentionUnsupported) as exc:
        return None, str(exc)
    return {
        "layers": step.num_layers,
        "heads": step.num_heads,
        "kv_heads": step.num_kv_heads,
        "rows": step.rows(),  # [layer][head][context position]
        "forward_ms": round(step.forward_seconds * 1000, 1),
    }, None


# --- a remote model's answer ------------------------------------------------------------------------
# Its server sent each token's text and, when it returns logprobs, the probability and the top
# alternatives after its sampler; the ids, the prompt's tokens and the attention stay on that server.
def remote_tokens_payload(message: Message) -> dict[str, Any]:
    shown = "".join(t[1] for t in message.tokens)
    return {
        "message": message.pk,
        "model": str((message.provenance or {}).get("model") or message.conversation.model_name),
        "remote": remote_host(message),
        "tokens": [
            {"index": i, "id": None, "text": t[1], "label": text_display(t[1]), "prob": t[2]}
            for i, t in enumerate(message.tokens)
        ],
        "tail": message.content[len(shown) :] if message.content.startswith(shown) else "",
    }


def remote_token_payload(message: Message, index: int) -> dict[str, Any]:
    if not 0 <= index < len(message.tokens):
        raise ChatError(
            f"Token {index} is out of range: the answer has {len(message.tokens)} tokens.", status=404
        )
    host = remote_host(message)
    _, text, prob, alternatives = message.tokens[index]
    provenance = message.provenance or {}
    model = str(provenance.get("model") or message.conversation.model_name)
    notes = []
    if prob is None:
        notes.append(f"{host} returned no probabilities for this answer, so none are shown.")
    return {
        "message": message.pk,
        "index": index,
        "model": model,
        "remote": host,
        "token": {"id": None, "text": text, "label": text_display(text), "prob": prob},
        "greedy": (provenance.get("sampling") or {}).get("temperature") in (0, 0.0),
        "alternatives": [
            {"id": None, "label": text_display(a[1]), "prob": a[2], "rank": a[3], "chosen": a[1] == text}
            for a in alternatives
        ],
        "chosen_listed": any(a[1] == text for a in alternatives),
        "context": {
            "labels": [],
            "prompt_tokens": ((provenance.get("stats") or {}).get("prompt_tokens") or 0),
            "generated_before": index,
        },
        "attention": None,
        "attention_error": (
            f"{model} is a remote model: its attention is computed on {host}, and the OpenAI API it is "
            "reached through does not send it. Models whose weights are here show it."
        ),
        "notes": notes,
    }


def text_display(text: str) -> str:
    """A token's text as the lab writes it when only the text is known: · for a space, ↵ for a newline."""
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "→") or "∅"
