"""What counts as text and as JSON anywhere a person or a script hands the playground something to read.

Text must be a string a tokenizer and a database can hold: no lone surrogate (half of a UTF-16 pair, which a
JSON escape such as "\\ud800" produces and which UTF-8 cannot encode) and no NUL character (which
PostgreSQL text cannot hold). JSON is parsed with a bound on how deeply it nests, so a body of fifty thousand
brackets is refused with a sentence instead of exhausting the parser's recursion.

The site's forms (playground.core.text) and the dataset parser (llmcore.datasets) both ask here.
"""

from __future__ import annotations

import json
from typing import Any

from llmcore.errors import UserError

# Deeper than any request, frame or dataset row the playground takes (a chat dataset row nests 3 levels).
MAX_JSON_DEPTH = 64


class JsonTooDeep(UserError, ValueError):
    """JSON that nests deeper than MAX_JSON_DEPTH; the message says so, for the user."""


def text_problem(text: str, what: str = "The text") -> str | None:
    """Why `text` is not text the playground can take, as a sentence starting with `what`; None if it is.

    Characters are counted from 1, as a person counts them.
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"{what} is not valid Unicode text (a lone surrogate at character {exc.start + 1})."
    nul = text.find("\x00")
    if nul >= 0:
        return f"{what} is not valid text (a NUL character at character {nul + 1})."
    return None


def json_type(value: Any) -> str:
    """What a JSON value is, in words: 'a list', 'a number'..."""
    if isinstance(value, bool):
        return "true or false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string" if isinstance(value, str) else type(value).__name__


def loads_json(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, refusing nesting deeper than `max_depth` with JsonTooDeep (a ValueError).

    Invalid JSON raises json.JSONDecodeError as json.loads does; bytes that are not UTF-8, UnicodeDecodeError.
    """
    try:
        value = json.loads(data)
    except RecursionError:  # the parser nests one C call per bracket: far past any sane depth
        raise JsonTooDeep(too_deep(max_depth)) from None
    if json_depth(value) > max_depth:
        raise JsonTooDeep(too_deep(max_depth))
    return value


def too_deep(max_depth: int) -> str:
    return f"The JSON nests more than {max_depth} levels deep; flatten it."


def json_depth(value: Any) -> int:
    """How many lists and objects deep `value` nests (0 for a string or a number), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
