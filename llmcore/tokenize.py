"""Text to tokens to vectors, step by step, and training small tokenizers.

Everything works on a `tokenizers.Tokenizer`, the Rust "backend" that every fast Hugging Face tokenizer
wraps, so a catalog model's tokenizer and one trained here go through the same code. The pipeline is the
backend's own: normalizer -> pre-tokenizer -> model (BPE, Unigram, WordPiece) -> ids; then the model's
embedding table turns ids into vectors, and RoPE turns positions into rotations.

Token strings are shown the way a learner can read them: the bytes a token stands for are decoded, and
what is invisible (spaces, tabs, newlines, control characters, bytes that are only part of a character)
is drawn with a visible mark, each kind of mark separately so a page can style and explain it.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from llmcore.encoding import EncodingError, encode_chat, text_backend
from llmcore.encoding import render_chat as render_chat_text
from llmcore.errors import UserError


class TokenizeError(UserError):
    """Something the person can fix or should know: shown as a message, never a traceback."""


class NoChatTemplate(TokenizeError):
    pass


class TrainError(TokenizeError):
    pass


# --- loading --------------------------------------------------------------------------------------
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
)


@functools.lru_cache(maxsize=16)
def _pretrained(folder: str, stamp: tuple[int, ...]) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)


def load_pretrained_tokenizer(folder: Path) -> Any:
    """A model folder's tokenizer only (no weights), cached until its files change."""
    stamp = tuple(p.stat().st_mtime_ns for p in (folder / n for n in TOKENIZER_FILES) if p.exists())
    return _pretrained(str(folder), stamp)


@functools.lru_cache(maxsize=32)
def _trained(path: str, stamp: int) -> Tokenizer:
    return Tokenizer.from_file(path)


def load_trained_tokenizer(path: Path) -> Tokenizer:
    return _trained(str(path), path.stat().st_mtime_ns)


def backend_of(tokenizer: Any) -> Tokenizer:
    """The `tokenizers.Tokenizer` behind a transformers tokenizer (or the tokenizer itself), without any
    padding or truncation its file configures (BERT-style files pad every text to 128 tokens)."""
    backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise TokenizeError("This tokenizer has no fast (Rust) backend, so its steps cannot be shown.")
    return _unpadded(backend) if backend.padding or backend.truncation else backend


@functools.lru_cache(maxsize=16)
def _unpadded(backend: Tokenizer) -> Tokenizer:
    # A copy: the original may be shared with code that sets padding on purpose.
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


# --- how a tokenizer spells bytes -----------------------------------------------------------------
@functools.cache
def byte_level_table() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each of the 256 bytes has a printable stand-in (a space is
    Ġ, a newline Ċ); this maps the stand-ins back to bytes."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")
METASPACE = "\u2581"  # ▁, SentencePiece's stand-in for a space


def _state(component: Any) -> dict[str, Any] | None:
    return json.loads(component.__getstate__()) if component is not None else None


def _types(state: Any) -> list[str]:
    """Every component type named anywhere in a normalizer/pre-tokenizer/decoder description."""
    if isinstance(state, dict):
        found = [state["type"]] if isinstance(state.get("type"), str) else []
        return found + [t for value in state.values() for t in _types(value)]
    if isinstance(state, list):
        return [t for value in state for t in _types(value)]
    return []


def describe(state: dict[str, Any] | None) -> str | None:
    """A short description of a pipeline component, e.g. "NFD → StripAccents → Lowercase"."""
    if state is None:
        return None
    kind = state.get("type", "?")
    children = state.get("normalizers") or state.get("pretokenizers") or state.get("decoders")
    if kind == "Sequence" and isinstance(children, list):
        return " → ".join(filter(None, (describe(c) for c in children))) or "Sequence"
    if kind == "Replace":
        pattern = state.get("pattern", {})
        return f"Replace({next(iter(pattern.values()), '?')!r} → {state.get('content')!r})"
    if kind == "Prepend":
        return f"Prepend({state.get('prepend')!r})"
    if kind == "BertNormalizer":
        # strip_accents null means "as lowercase": BERT's uncased models strip accents too.
        strip = state.get("lowercase") if state.get("strip_accents") is None else state.get("strip_accents")
        on = ["lowercase"] if state.get("lowercase") else []
        on += ["strip accents"] if strip else []
        on += ["clean control chars"] if state.get("clean_text") else []
        on += ["space around CJK"] if state.get("handle_chinese_chars") else []
        return f"BertNormalizer({', '.join(on)})"
    if kind == "Split":
        return f"Split({next(iter(state.get('pattern', {}).values()), '?')!r})"
    return str(kind)


@dataclass(frozen=True)
class Scheme:
    """How one tokenizer writes text in its vocabulary: which stand-ins to undo before showing a token."""

    byte_level: bool  # GPT-2 style: every byte has a printable stand-in (Ġ = space)
    metaspace: bool  # SentencePiece style: ▁ marks a space
    byte_fallback: bool  # <0xE2> tokens stand for single bytes of characters not in the vocabulary
    continuing_prefix: str | None  # WordPiece's "##": this piece continues the previous word
    special_ids: frozenset[int]
    model: str
    normalizer: str | None
    pre_tokenizer: str | None
    decoder: str | None


@functools.lru_cache(maxsize=64)
def scheme_of(backend: Tokenizer) -> Scheme:
    norm, pre, dec = _state(backend.normalizer), _state(backend.pre_tokenizer), _state(backend.decoder)
    types = set(_types([pre, dec]))
    model = backend.model
    prefix = (
        getattr(model, "continuing_subword_prefix", None) if type(model).__name__ == "WordPiece" else None
    )
    return Scheme(
        byte_level="ByteLevel" in types,
        metaspace="Metaspace" in types or METASPACE in json.dumps([norm, pre, dec], ensure_ascii=False),
        byte_fallback=bool(getattr(model, "byte_fallback", False)) or "ByteFallback" in types,
        continuing_prefix=prefix or None,
        special_ids=frozenset(i for i, t in backend.get_added_tokens_decoder().items() if t.special),
        model=type(model).__name__,
        normalizer=describe(norm),
        pre_tokenizer=describe(pre),
        decoder=describe(dec),
    )


# --- showing pieces -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """A run of a token's text with one way of showing it. kind: text, space (· → ↵ and the like),
    control (an invisible or control character, named), byte (part of a character: <0xF0>),
    marker (WordPiece's ##), special (a special token, shown as written)."""

    kind: str
    text: str


VISIBLE = {" ": "·", "\t": "→", "\n": "↵", "\r": "␍", "\u00a0": "⍽", "\u3000": "□"}


def pieces_of_text(text: str) -> list[Piece]:
    out: list[Piece] = []

    def add(kind: str, s: str) -> None:
        if out and out[-1].kind == kind and kind in {"text", "space"}:
            out[-1] = Piece(kind, out[-1].text + s)
        else:
            out.append(Piece(kind, s))

    for char in text:
        category = unicodedata.category(char)
        if char in VISIBLE:
            add("space", VISIBLE[char])
        elif category == "Cc":
            # Control characters get their Unicode "control picture" (␇ for BEL) or their code point.
            code = ord(char)
            add("control", chr(0x2400 + code) if code < 0x20 else f"U+{code:04X}")
        elif category in {"Cf", "Zs", "Zl", "Zp", "Co", "Cs"}:
            add("control", f"U+{ord(char):04X}")
        elif category.startswith("M") and not (out and out[-1].kind == "text"):
            add("text", "◌" + char)  # a combining mark with nothing to sit on: give it a dotted circle
        else:
            add("text", char)
    return out


def pieces_of_bytes(data: bytes) -> list[Piece]:
    """Decode what is whole UTF-8; bytes that are only part of a character show as <0xNN>."""
    out: list[Piece] = []
    rest = data
    while rest:
        try:
            out += pieces_of_text(rest.decode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            out += pieces_of_text(rest[: exc.start].decode("utf-8"))
            out += [Piece("byte", f"<0x{b:02X}>") for b in rest[exc.start : exc.end]]
            rest = rest[exc.end :]
    return out


def token_bytes(token: str, scheme: Scheme) -> bytes:
    """The bytes of text a vocabulary entry stands for, with the tokenizer's stand-ins undone."""
    match = BYTE_FALLBACK.fullmatch(token) if scheme.byte_fallback else None
    if match:
        return bytes([int(match.group(1), 16)])
    table = byte_level_table()
    if scheme.byte_level and all(c in table for c in token):
        return bytes(table[c] for c in token)
    if scheme.metaspace:
        token = token.replace(METASPACE, " ")
    return token.encode("utf-8")


def pieces_of_token(token: str, scheme: Scheme, special: bool = False) -> list[Piece]:
    if special:
        return [Piece("special", token)]
    prefix = scheme.continuing_prefix
    if prefix and token.startswith(prefix) and token != prefix:
        return [Piece("marker", prefix), *pieces_of_bytes(token_bytes(token[len(prefix) :], scheme))]
    return pieces_of_bytes(token_bytes(token, scheme))


def token_display(tokenizer: Any, token_id: int) -> str:
    """One vocabulary entry as a person reads it, in the lab's notation (· for a space, <0xE2> for part
    of a character), for tools that show single tokens: the next-token bars, the logit lens."""
    backend = backend_of(tokenizer)
    scheme = scheme_of(backend)
    token = backend.id_to_token(token_id)
    if token is None:
        return f"<{token_id}>"
    return "".join(p.text for p in pieces_of_token(token, scheme, token_id in scheme.special_ids))


def vocabulary_bytes(tokenizer: Any, token_id: int) -> bytes:
    """The bytes of text one vocabulary entry stands for (a special token: its written form), the
    tokenizer's stand-ins undone: what an API reports as a token's `bytes`, even for part of a character."""
    backend = backend_of(tokenizer)
    scheme = scheme_of(backend)
    token = backend.id_to_token(token_id)
    if token is None:
        return b""
    if token_id in scheme.special_ids:
        return token.encode("utf-8")
    prefix = scheme.continuing_prefix
    if prefix and token.startswith(prefix) and token != prefix:
        token = token[len(prefix) :]
    return token_bytes(token, scheme)


# --- tokens ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    index: int  # position in the sequence
    id: int
    text: str  # the vocabulary entry as the tokenizer writes it ("Ġworld", "▁the", "<0xE2>")
    pieces: tuple[Piece, ...]
    start: int  # offsets into the text, in characters
    end: int
    special: bool
    byte: bool  # holds only part of a character (byte-level or byte-fallback)
    source: str  # text[start:end]: for a byte piece, the whole character it is part of

    @property
    def display(self) -> str:
        return "".join(p.text for p in self.pieces)


@dataclass(frozen=True)
class Counts:
    tokens: int
    characters: int
    bytes: int

    @property
    def characters_per_token(self) -> float:
        return round(self.characters / self.tokens, 2) if self.tokens else 0.0


@dataclass(frozen=True)
class Tokenization:
    text: str
    tokens: list[Token]
    counts: Counts
    decoded: str  # decode(encode(text)), special tokens kept

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def round_trip_exact(self) -> bool:
        return self.decoded == self.text


def check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TokenizeError("The text is not valid Unicode: it holds half of a surrogate pair.") from None


def tokenize(tokenizer: Any, text: str, *, parse_special: bool = False) -> Tokenization:
    """Encode the text as typed (no BOS or other added special tokens), decode it, describe each token.

    Special-token characters in the text (`<|im_end|>`) stay text unless `parse_special` asks for what a
    tokenizer does by default: turn them into the control tokens themselves (llmcore.encoding says why).
    """
    backend = backend_of(tokenizer)
    check_text(text)
    encoding = text_backend(backend, parse_special).encode(text, add_special_tokens=False)
    return _tokenization(backend, text, encoding.ids, encoding.offsets)


def _tokenization(
    backend: Tokenizer, text: str, ids: Sequence[int], offsets: Sequence[tuple[int, int]]
) -> Tokenization:
    scheme = scheme_of(backend)
    tokens = []
    for index, (token_id, (start, end)) in enumerate(zip(ids, offsets, strict=True)):
        # id_to_token, not encoding.tokens: for an unknown piece the latter repeats the input text.
        vocab = backend.id_to_token(token_id) or ""
        special = token_id in scheme.special_ids
        pieces = tuple(pieces_of_token(vocab, scheme, special))
        is_byte = any(p.kind == "byte" for p in pieces)
        tokens.append(Token(index, token_id, vocab, pieces, start, end, special, is_byte, text[start:end]))
    counts = Counts(len(tokens), len(text), len(text.encode("utf-8")))
    decoded = backend.decode(list(ids), skip_special_tokens=False)
    return Tokenization(text, tokens, counts, decoded)


def _decoded_offsets(backend: Tokenizer, text: str, ids: Sequence[int]) -> list[tuple[int, int]]:
    """Character spans of `ids` in `text`, read off decoding ever longer prefixes (for ids that came from
    several encode calls, which give no offsets into the whole). A token holding part of a character
    spans nothing; the token that completes it spans the character."""
    offsets, shown = [], 0
    for i in range(len(ids)):
        decoded = backend.decode(list(ids[: i + 1]), skip_special_tokens=False)
        if i < len(ids) - 1:
            decoded = decoded.rstrip("\ufffd")
        end = min(max(len(decoded), shown), len(text))
        offsets.append((shown, end))
        shown = end
    return offsets


# --- the pipeline ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreToken:
    text: str  # as the pre-tokenizer wrote it (byte-level pieces in their Ġ form)
    pieces: tuple[Piece, ...]
    start: int  # offsets into the normalized text
    end: int


@dataclass(frozen=True)
class Pipeline:
    normalizer: str | None  # what the normalizer does; None: the tokenizer has none
    normalized: str | None
    pre_tokenizer: str | None
    pre_tokens: list[PreToken]
    model: str  # BPE, Unigram, WordPiece, WordLevel
    decoder: str | None
    tokenization: Tokenization

    @property
    def normalized_pieces(self) -> list[Piece]:
        return pieces_of_text(self.normalized) if self.normalized is not None else []


def pipeline(tokenizer: Any, text: str, *, parse_special: bool = False) -> Pipeline:
    backend = backend_of(tokenizer)
    scheme = scheme_of(backend)
    check_text(text)
    normalized = backend.normalizer.normalize_str(text) if backend.normalizer is not None else None
    pre_tokens: list[PreToken] = []
    if backend.pre_tokenizer is not None:
        for piece, (start, end) in backend.pre_tokenizer.pre_tokenize_str(normalized or text):
            pre_tokens.append(PreToken(piece, tuple(pieces_of_token(piece, scheme)), start, end))
    return Pipeline(
        normalizer=scheme.normalizer,
        normalized=normalized,
        pre_tokenizer=scheme.pre_tokenizer,
        pre_tokens=pre_tokens,
        model=scheme.model,
        decoder=scheme.decoder,
        tokenization=tokenize(backend, text, parse_special=parse_special),
    )


# --- embeddings and positions ---------------------------------------------------------------------
@dataclass(frozen=True)
class EmbeddingRow:
    position: int
    token_id: int
    norm: float  # L2 norm of the whole vector
    values: list[float]  # its first `dims` numbers


@dataclass(frozen=True)
class Embeddings:
    hidden_size: int
    dims: int
    total_tokens: int  # rows cover the first `limit` of these
    rows: list[EmbeddingRow]

    @property
    def scale(self) -> float:
        """The largest magnitude among the shown values, so every sparkline shares one y scale."""
        return max((abs(v) for r in self.rows for v in r.values), default=0.0) or 1.0


def embed_tokens(model: Any, ids: Sequence[int], *, dims: int = 64, limit: int = 128) -> Embeddings:
    """Look the ids up in the model's input embedding table: no forward pass, just the first layer.

    The embedding module is called rather than its weight indexed, so models that scale their embeddings
    (Gemma multiplies by sqrt(hidden size)) show what the first layer really receives.
    """
    import torch

    table = model.get_input_embeddings()
    shown = list(ids[:limit])
    with torch.no_grad():
        index = torch.tensor(shown, dtype=torch.long, device=table.weight.device)
        vectors = table(index).float().cpu()  # (T, hidden)
    hidden = int(vectors.shape[-1]) if shown else int(table.weight.shape[-1])
    norms = vectors.norm(dim=-1).tolist() if shown else []
    head = vectors[:, :dims].tolist() if shown else []
    rows = [
        EmbeddingRow(p, tid, round(n, 4), [round(v, 5) for v in vals])
        for p, (tid, n, vals) in enumerate(zip(shown, norms, head, strict=True))
    ]
    return Embeddings(hidden, min(dims, hidden), len(ids), rows)


@dataclass(frozen=True)
class Rope:
    """Rotary position embedding: pair i of each query/key head turns by position * theta_i."""

    label: str  # which attention layers use it ("" when all do)
    base: float
    rotary_dim: int  # dims rotated per head: head_dim times partial_rotary_factor
    rope_type: str
    frequencies: list[float] = field(default_factory=list)  # theta_i = base^(-2i/d), i < d/2

    def angles(self, position: int) -> tuple[float, float]:
        """Angle of the fastest and of the slowest pair at a position, in radians."""
        return position * self.frequencies[0], position * self.frequencies[-1]


def rope_of(config: Any) -> list[Rope]:
    """The RoPE settings of a model config; empty when its positions are not rotary."""
    text_config = getattr(config, "get_text_config", lambda: config)()
    params = getattr(text_config, "rope_parameters", None) or {}
    heads = getattr(text_config, "num_attention_heads", None)
    head_dim = getattr(text_config, "head_dim", None) or (
        text_config.hidden_size // heads if heads and getattr(text_config, "hidden_size", None) else None
    )
    if not head_dim:
        return []
    # Some models (Gemma 3) use a different RoPE per layer type: {"full_attention": {...}, ...}.
    groups = (
        params.items() if params and all(isinstance(v, dict) for v in params.values()) else [("", params)]
    )
    ropes = []
    for label, group in groups:
        base = group.get("rope_theta") or getattr(text_config, "rope_theta", None)
        if not base:
            continue
        factor = group.get("partial_rotary_factor") or getattr(text_config, "partial_rotary_factor", 1.0)
        dim = int(head_dim * (factor or 1.0))
        thetas = [float(base) ** (-2 * i / dim) for i in range(dim // 2)]
        ropes.append(Rope(label, float(base), dim, str(group.get("rope_type", "default")), thetas))
    return ropes


# --- the chat template ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ChatRendering:
    text: str  # the conversation as the chat template writes it
    tokenization: Tokenization
    segments: list[tuple[str, bool]]  # the text cut into (run, is a special token)

    @property
    def special_count(self) -> int:
        return sum(t.special for t in self.tokenization.tokens)


def render_chat(
    tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool = False
) -> ChatRendering:
    """The conversation as the model sees it: through its chat template, then tokenized."""
    if not getattr(tokenizer, "chat_template", None):
        raise NoChatTemplate("This tokenizer has no chat template: the model was not trained to chat.")
    from jinja2 import TemplateError

    try:
        text = render_chat_text(tokenizer, messages, add_generation_prompt=generation_prompt)
        ids = encode_chat(tokenizer, messages, add_generation_prompt=generation_prompt)
    except TemplateError as exc:  # e.g. "System role not supported"
        raise TokenizeError(f"The chat template refused this conversation: {exc}") from None
    except EncodingError as exc:
        raise TokenizeError(str(exc)) from None
    # The ids are chat's own (the template's markers special, the messages' text text). Encoding the
    # rendered text again gives the same ids and exact offsets, unless a message holds special-token text.
    tokenization = tokenize(tokenizer, text, parse_special=True)
    if tokenization.ids != ids:
        backend = backend_of(tokenizer)
        tokenization = _tokenization(backend, text, ids, _decoded_offsets(backend, text, ids))
    segments: list[tuple[str, bool]] = []
    cursor = 0
    for token in (t for t in tokenization.tokens if t.special):
        if token.start > cursor:
            segments.append((text[cursor : token.start], False))
        segments.append((text[token.start : token.end], True))
        cursor = token.end
    if cursor < len(text):
        segments.append((text[cursor:], False))
    return ChatRendering(text, tokenization, segments)


# --- training -------------------------------------------------------------------------------------
TRAIN_KINDS = {"bpe": "BPE (byte-level)", "unigram": "Unigram", "wordpiece": "WordPiece"}
UNICODE_FORMS = ("NFC", "NFD", "NFKC", "NFKD")
VOCAB_MIN, VOCAB_MAX = 100, 50_000
SPECIALS = {
    "bpe": ["<|endoftext|>"],
    "unigram": ["<unk>", "<s>", "</s>"],
    "wordpiece": ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"],
}


@dataclass(frozen=True)
class TrainConfig:
    """What to train. BPE is byte-level (GPT-2 style: every string can be encoded); Unigram splits on
    spaces marked ▁ (SentencePiece style); WordPiece splits on spaces and punctuation (BERT style) and
    so cannot give spaces back when decoding."""

    kind: str = "bpe"
    vocab_size: int = 1000
    unicode_form: str = ""  # "", NFC, NFD, NFKC or NFKD
    lowercase: bool = False
    strip_accents: bool = False
    min_frequency: int = 2  # a pair must occur this often to be merged (BPE, WordPiece)

    def check(self) -> None:
        if self.kind not in TRAIN_KINDS:
            raise TrainError(f"Unknown tokenizer kind {self.kind!r}: pick one of {', '.join(TRAIN_KINDS)}.")
        if not VOCAB_MIN <= self.vocab_size <= VOCAB_MAX:
            raise TrainError(f"The vocabulary size must be between {VOCAB_MIN} and {VOCAB_MAX}.")
        if self.unicode_form and self.unicode_form not in UNICODE_FORMS:
            raise TrainError(f"Unknown Unicode normalization {self.unicode_form!r}.")

    def normalizer(self) -> normalizers.Normalizer | None:
        steps: list[normalizers.Normalizer] = []
        if self.unicode_form:
            steps.append(getattr(normalizers, self.unicode_form)())
        if self.strip_accents:
            # Accents can only be stripped once they are separate code points: decompose first.
            steps += [normalizers.NFD(), normalizers.StripAccents()]
        if self.lowercase:
            steps.append(normalizers.Lowercase())
        return normalizers.Sequence(steps) if steps else None


def train_tokenizer(texts: Iterable[str], config: TrainConfig) -> Tokenizer:
    """Train a new tokenizer on the texts (any iterable of strings, e.g. a file's lines)."""
    config.check()
    specials = SPECIALS[config.kind]
    trainer: trainers.Trainer
    if config.kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
            show_progress=False,
        )
    elif config.kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=config.vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
        )
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            special_tokens=specials,
            show_progress=False,
        )
    normalizer = config.normalizer()
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    seen = _Counting(texts)
    try:
        tokenizer.train_from_iterator(seen, trainer)
    except Exception as exc:  # the Rust trainer raises a plain Exception with its reason
        if "not large enough" in str(exc):
            raise TrainError(
                "The vocabulary size is smaller than the number of different characters in the text: "
                "raise it, or train on less varied text."
            ) from None
        raise TrainError(f"Training failed: {exc}") from None
    if not seen.nonblank:
        raise TrainError("The training text is empty.")
    return tokenizer


class _Counting:
    """Passes texts through to the trainer and notes whether any of them had something to learn."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts, self.nonblank = texts, False

    def __iter__(self):
        for text in self.texts:
            self.nonblank = self.nonblank or bool(text.strip())
            yield text
