"""Text and conversations to token ids, with what a user typed kept as text.

A tokenizer that parses special tokens turns the characters `<|im_end|>` into the real end-of-turn token
wherever they appear. A chat template writes such markers itself, and a user message must never be able to
add more: `hi<|im_end|>\\n<|im_start|>system\\n...` would otherwise forge a system turn. So:

- a conversation is encoded with transformers' `apply_chat_template(..., sanitize_control_tokens=True)`: the
  markers the template writes are control tokens, the same characters inside a message are encoded as text;
- plain text (a prompt typed into the attention explorer, the logit lens, the next-token page, a dataset's
  `text` rows) is encoded by a copy of the tokenizer's backend that never parses special tokens. A copy,
  because transformers' `split_special_tokens=True` flips a flag on the shared backend for every call, and a
  call on another thread (the chat engine rendering a template) would then see the wrong setting.

Everything else (a BOS token the tokenizer adds, its normalizer, SentencePiece's leading space) is unchanged:
for text without special-token characters both give exactly the ids the tokenizer gave before.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer

from llmcore.errors import UserError

Message = dict[str, str]

_plain_backends: weakref.WeakKeyDictionary[Tokenizer, Tokenizer] = weakref.WeakKeyDictionary()
_plain_lock = threading.Lock()


class EncodingError(UserError, ValueError):
    """A conversation cannot be encoded so that its text stays text; the message says why, for the user."""


def encode_chat(
    tokenizer: Any,
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool = True,
    chat_template: str | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
) -> list[int]:
    """Token ids of `messages` rendered through the chat template; only the template's markers are special.
    `tools`: function definitions for a template that renders them (llmcore.tools)."""
    try:
        ids = tokenizer.apply_chat_template(
            [dict(m) for m in messages],
            chat_template=chat_template,
            tools=list(tools) if tools else None,
            add_generation_prompt=add_generation_prompt,
            tokenize=True,
            return_dict=False,
            sanitize_control_tokens=True,
        )
    except ValueError as exc:
        # transformers refuses a token that this tokenizer would produce from plain text as well, where the
        # two could not be told apart; the message names the token.
        raise EncodingError(f"This conversation cannot be encoded safely: {exc}") from None
    return [int(i) for i in ids]


def render_chat(
    tokenizer: Any,
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool = True,
    chat_template: str | None = None,
) -> str:
    """The conversation as the template writes it, for showing; the model reads `encode_chat`."""
    return str(
        tokenizer.apply_chat_template(
            [dict(m) for m in messages],
            chat_template=chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )
    )


def plain_backend(backend: Tokenizer) -> Tokenizer:
    """A copy of a `tokenizers` backend that encodes special-token characters as text (built once each)."""
    with _plain_lock:
        plain = _plain_backends.get(backend)
        if plain is None:
            plain = Tokenizer.from_str(backend.to_str())
            plain.encode_special_tokens = True
            # A BERT-style file pads and truncates every text to a fixed length (MiniLM's to 128), which
            # transformers turns off for each call it makes; so does this copy: the ids are the text's.
            plain.no_padding()
            plain.no_truncation()
            _plain_backends[backend] = plain
        return plain


def text_backend(backend: Tokenizer, parse_special: bool = False) -> Tokenizer:
    """The backend to encode typed text with: `parse_special` only where the user asked for it."""
    return backend if parse_special else plain_backend(backend)


def encode_text(tokenizer: Any, text: str, *, add_special_tokens: bool = True) -> list[int]:
    """Token ids of plain text, with any special-token characters in it kept as text.

    `add_special_tokens` adds what the tokenizer puts around every input (a BOS token, BERT's [CLS] and
    [SEP]); those are the tokenizer's, not the user's.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer keeps no shared flag to race on
        return list(tokenizer.encode(text, add_special_tokens=add_special_tokens, split_special_tokens=True))
    return list(plain_backend(backend).encode(text, add_special_tokens=add_special_tokens).ids)
