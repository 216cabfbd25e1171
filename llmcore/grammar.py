"""Structured output: a grammar the answer must follow, enforced while decoding as a mask over tokens.

A `Constraint` says what an answer must be: any JSON object (`json_object`), JSON valid against a schema
(`json_schema`), or tool calls (`llmcore.tools` builds those as a Lark grammar with inline JSON schemas).
It is checked when it is made, so a schema the grammar library cannot enforce is refused with its
reason before anything runs. The engine compiles a constraint once per tokenizer (`Grammars`, one per
loaded model: converting a tokenizer takes about a second, so it is done once) and gives every sequence
its own `GrammarState`: `allowed()` is the mask for the next token, `mask(logits)` sets every token the
grammar forbids to -inf before the sampler's stages (so temperature, top-k, top-p and greedy only ever
choose among allowed tokens), `advance(token)` moves the state on. The end-of-turn token is allowed only
where the grammar is complete, and once nothing more can follow the answer ends (`done`).

The library is llguidance rather than xgrammar (both are maintained and both are used by vLLM and
SGLang): llguidance ships one abi3 wheel with no torch dependency (xgrammar builds against torch
versions), computes each mask lazily over the tokenizer's token trie in Rust with no precomputation over
the vocabulary per grammar (which matters when every API request brings its own schema: `python -m bench
grammar` measures compiling one), reads a Hugging Face tokenizer directly (`llguidance.hf`), takes JSON
Schema and Lark with inline `%json` (a tool call between text markers is one grammar) and says which
keyword of a schema it cannot enforce. llama.cpp uses it too.
"""

from __future__ import annotations

import collections
import enum
import json
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import llguidance
import llguidance.hf
import torch

from llmcore.errors import UserError
from llmcore.sampling import apply_grammar

MAX_SCHEMA_CHARS = 32_000  # a schema is sent with every request; a bigger one is refused before compiling
COMPILED_PER_TOKENIZER = 64  # compiled grammars kept per tokenizer (least recently used go first)
# How JSON may be spaced: on one line, a space after a comma or colon or none (`{"a": 1, "b": [2, 3]}`).
# A model left free to write whitespace can write it for ever, a known failure of constrained decoding:
# the random test model, allowed 16 whitespace characters wherever JSON allows them, greedily wrote 16
# everywhere and ran out of tokens before its object was done.
JSON_LAYOUT: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ?", "key_separator": ": ?"}


class ConstraintKind(enum.StrEnum):
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # JSON valid against the request's schema
    TOOL_CALLS = "tool_calls"  # tool calls in llmcore.tools' format (or, with tool_choice auto, text)


class GrammarError(UserError, ValueError):
    """A schema or grammar that cannot be enforced, or a request that cannot combine with one."""


@dataclass(frozen=True)
class Constraint:
    """What an answer must be, as llguidance's grammar text (compiled per tokenizer by `Grammars`).
    Make one with `json_object()`, `json_schema()` or `llmcore.tools.tool_constraint()`."""

    kind: ConstraintKind
    grammar: str
    schema: Any = None  # the JSON schema as given (json_schema), recorded with the answer
    strict: bool = True
    warnings: tuple[str, ...] = ()  # what the library could not enforce (strict=False only)

    def describe(self) -> dict[str, Any]:
        """The constraint as an answer's provenance records it."""
        return {
            "kind": self.kind.value,
            "schema": self.schema,
            "strict": self.strict,
            "warnings": list(self.warnings),
        }


def json_object() -> Constraint:
    """Any JSON object (OpenAI's `response_format: {"type": "json_object"}`)."""
    return _json(ConstraintKind.JSON_OBJECT, {"type": "object"}, strict=True)


def json_schema(schema: Any, strict: bool = True) -> Constraint:
    """JSON valid against `schema` (a dict, or its JSON text). strict: refuse a schema with a keyword the
    library cannot enforce; not strict: enforce the rest and record what was left out as warnings."""
    if isinstance(schema, str):
        if len(schema) > MAX_SCHEMA_CHARS:
            raise GrammarError(
                f"The JSON schema is {len(schema):,} characters; the limit is {MAX_SCHEMA_CHARS:,}."
            )
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise GrammarError(f"The JSON schema is not valid JSON: {exc}.") from None
    if isinstance(schema, bool):
        schema = {} if schema else {"not": {}}
    if not isinstance(schema, dict):
        raise GrammarError('A JSON schema is a JSON object, such as {"type": "object"}.')
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise GrammarError(f"The JSON schema is over {MAX_SCHEMA_CHARS:,} characters.")
    return _json(ConstraintKind.JSON_SCHEMA, schema, strict)


def from_response_format(response_format: Any) -> Constraint | None:
    """OpenAI's `response_format`: {"type": "text"} (None), {"type": "json_object"}, or {"type":
    "json_schema", "json_schema": {"name", "schema", "strict"}}. strict (OpenAI's default: false) refuses
    a schema with a keyword the library cannot enforce; without it the rest is enforced all the same."""
    if not response_format:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return json_object()
    if kind != "json_schema":
        raise GrammarError('response_format type is "text", "json_object" or "json_schema".')
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or "schema" not in spec:
        raise GrammarError('response_format json_schema needs {"name": ..., "schema": {...}}.')
    return json_schema(spec["schema"], strict=spec.get("strict") is True)


def json_grammar_options(strict: bool) -> dict[str, Any]:
    """The JSON compiler's options: the layout above; `lenient` (ignore what cannot be enforced) unless
    strict. Given as overrides, so a schema's own "x-guidance" key cannot loosen them."""
    return {**JSON_LAYOUT, "lenient": not strict}


def _json(kind: ConstraintKind, schema: dict[str, Any], strict: bool) -> Constraint:
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema,
            overrides=json_grammar_options(strict),  # type: ignore[arg-type]  # a JsonCompileOptions dict
        )
    except ValueError as exc:
        raise GrammarError(f"The JSON schema cannot be read: {exc}") from None
    return checked(kind, grammar, schema, strict, what="The JSON schema")


def checked(kind: ConstraintKind, grammar: str, schema: Any, strict: bool, what: str) -> Constraint:
    """A Constraint for llguidance grammar text, refused with the library's reason when it is invalid."""
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise GrammarError(f"{what} cannot be enforced: {plain(messages[0] if messages else 'invalid')}")
    return Constraint(kind, grammar, schema, strict, tuple(plain(m) for m in messages))


def lark_constraint(kind: ConstraintKind, lark: str, schema: Any, what: str) -> Constraint:
    """A Constraint from a Lark grammar (llguidance's dialect: `%json {...}` inlines a JSON schema)."""
    return checked(kind, llguidance.LLMatcher.grammar_from_lark(lark), schema, True, what)


def plain(message: str, limit: int = 400) -> str:
    """The library's message on one line (a regex error spans several: the pattern, a caret, why)."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    text = text.removeprefix("WARNING: ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- one tokenizer's grammars ---------------------------------------------------------------------
class Grammars:
    """The grammars of one tokenizer: its llguidance conversion and each grammar compiled for it, kept
    (least recently used dropped) for the next request that brings the same one. Thread-safe."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> None:
        try:
            self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=stop_ids)
        except ValueError as exc:  # a slow (Python-only) tokenizer
            raise GrammarError(f"Structured output needs a fast tokenizer: {exc}") from None
        self.vocab_size = vocab_size
        self._compiled: collections.OrderedDict[str, llguidance.LLMatcher] = collections.OrderedDict()
        self._lock = threading.Lock()

    def state(self, constraint: Constraint) -> GrammarState:
        """A fresh state of the constraint's grammar for one sequence."""
        with self._lock:
            matcher = self._compiled.get(constraint.grammar)
            if matcher is not None:
                self._compiled.move_to_end(constraint.grammar)
        if matcher is None:
            matcher = llguidance.LLMatcher(self.tokenizer, constraint.grammar, log_level=0)
            if matcher.is_error():
                raise GrammarError(f"The grammar cannot be enforced: {plain(matcher.get_error())}")
            with self._lock:
                self._compiled[constraint.grammar] = matcher
                while len(self._compiled) > COMPILED_PER_TOKENIZER:
                    self._compiled.popitem(last=False)
        return GrammarState(matcher.deep_copy(), self.vocab_size)


_grammars: weakref.WeakKeyDictionary[Any, dict[tuple[int, tuple[int, ...]], Grammars]] = (
    weakref.WeakKeyDictionary()
)
_grammars_lock = threading.Lock()


def grammars_for(tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> Grammars:
    """The Grammars of a loaded model's tokenizer, made on first use and kept while the tokenizer lives
    (the engine and the next-token explorer share them)."""
    key = (vocab_size, tuple(stop_ids))
    with _grammars_lock:
        found = _grammars.setdefault(tokenizer, {}).get(key)
    if found is None:
        found = Grammars(tokenizer, vocab_size, stop_ids)
        with _grammars_lock:
            found = _grammars[tokenizer].setdefault(key, found)
    return found


# --- one sequence's state -------------------------------------------------------------------------
_BITS = torch.arange(32, dtype=torch.int32)


class GrammarState:
    """Where one sequence is in its grammar."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int) -> None:
        self._matcher = matcher
        self.vocab_size = vocab_size
        self._words = torch.zeros((vocab_size + 31) // 32, dtype=torch.int32)  # one bit per token

    def allowed(self) -> torch.Tensor:
        """(V,) bool: the tokens the grammar allows next (an end-of-turn token only where it is complete)."""
        words = self._words
        self._matcher.unsafe_compute_mask_ptr(words.data_ptr(), words.numel() * words.element_size())
        self._raise_on_error()
        bits = (words.unsqueeze(1) >> _BITS) & 1  # (V / 32, 32), token 32 * i + j at [i, j]
        return bits.view(-1)[: self.vocab_size].bool()

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits (V,) with every token the grammar forbids at -inf."""
        allowed = self.allowed()
        if logits.numel() != allowed.numel():  # an output head wider than the tokenizer: the rest is not text
            allowed = torch.nn.functional.pad(allowed, (0, logits.numel() - allowed.numel()))
        return apply_grammar(logits, allowed)

    def advance(self, token: int) -> bool:
        """Take a generated token; True when the grammar is complete and can take nothing more."""
        if not self._matcher.consume_token(token):
            self._raise_on_error()
            raise GrammarError(f"token {token} does not follow the grammar here")
        return self._matcher.is_stopped()

    def advance_all(self, tokens: list[int]) -> int:
        """Take tokens that are already written (a forced start); returns how many the grammar took."""
        for i, token in enumerate(tokens):
            if not self._matcher.consume_token(token):
                return i
        return len(tokens)

    @property
    def accepting(self) -> bool:
        """Whether the answer so far is complete under the grammar (it may still go on)."""
        return self._matcher.is_accepting()

    @property
    def done(self) -> bool:
        """Whether nothing more can follow: the answer ends here."""
        return self._matcher.is_stopped()

    def _raise_on_error(self) -> None:
        if self._matcher.is_error():
            raise GrammarError(f"The grammar stopped: {plain(self._matcher.get_error())}")
