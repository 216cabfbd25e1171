"""The tokenizer lab's glue between the site and `llmcore.tokenize`: which tokenizers a person may use, the
steps of the pipeline for a text, the chat template, training and keeping tokenizers, and the API's JSON.

Choices name their kind: "model:<name>" is a catalog model's tokenizer, "trained:<id>" one the person
trained here (only its owner can see or use it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from llmcore import tokenize as core
from llmcore.loading import reading_tokenizer
from llmcore.tokenize import (  # noqa: F401  (re-exported for forms and views)
    TRAIN_KINDS,
    UNICODE_FORMS,
    VOCAB_MAX,
    VOCAB_MIN,
    NoChatTemplate,
    TokenizeError,
    TrainError,
)
from playground.catalog.services import get_visible_model
from playground.core.services import model_store
from playground.inspect.models import TrainedTokenizer
from playground.inspect.services.common import default_model_name, get_loaded, model_choices

TRAIN_KIND_CHOICES = list(TRAIN_KINDS.items())
EMBEDDING_DIMS = 64  # numbers of each embedding vector drawn as a sparkline
EMBEDDING_ROWS = 128  # tokens whose embeddings are shown


# --- which tokenizers -----------------------------------------------------------------------------
def ready_trained(user: Any) -> list[TrainedTokenizer]:
    if user is None or not user.is_authenticated:
        return []
    return list(TrainedTokenizer.objects.filter(owner=user, status=TrainedTokenizer.Status.READY))


def tokenizer_choices(user: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    catalog = [(f"model:{name}", label) for name, label in model_choices(user)]
    mine = [(t.choice_value, f"{t.name} (trained {t.get_kind_display()})") for t in ready_trained(user)]
    return [
        (group, options)
        for group, options in [("Catalog models", catalog), ("Your trained tokenizers", mine)]
        if options
    ]


def pretrained_tokenizer(model_name: str) -> Any:
    """A store model's tokenizer; files that do not parse raise a TokenizeError saying why (a 400)."""
    with reading_tokenizer(model_name):
        return core.load_pretrained_tokenizer(model_store().path(model_name))


def default_choice(user: Any = None) -> str | None:
    name = default_model_name(user)
    return f"model:{name}" if name else None


@dataclass(frozen=True)
class Source:
    choice: str
    name: str
    tokenizer: Any  # a transformers tokenizer, or a tokenizers.Tokenizer for trained ones
    model_name: str | None  # the catalog model behind it; None for a trained tokenizer
    trained: TrainedTokenizer | None = None


def resolve(choice: str, user: Any) -> Source:
    kind, _, ref = choice.partition(":")
    if kind == "model":
        get_visible_model(user, ref)  # LookupError, worded alike, for a model this user may not see
        return Source(choice, ref, pretrained_tokenizer(ref), ref)
    row = next((t for t in ready_trained(user) if kind == "trained" and str(t.pk) == ref), None)
    if row is None:
        raise LookupError(f"No tokenizer {choice!r} among yours.")
    return Source(choice, row.name, core.load_trained_tokenizer(row.path), None, row)


# --- the lab --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbeddingLine:
    token: core.Token
    norm: float
    points: str  # SVG polyline of the first dims, on the scale shared by every line
    angle: float  # degrees the fastest RoPE pair has turned at this position
    hand: tuple[str, str]  # where that angle points on a dial of radius 8 around (10, 10), as SVG x, y


@dataclass(frozen=True)
class RopeView:
    rope: core.Rope
    bars: list[tuple[str, str, str]]  # SVG (x, y, height) of log10(theta_i), one bar per pair
    slowest_turn: float  # tokens for the slowest pair to turn once
    width: int  # of the bar chart, in SVG units


@dataclass
class Column:
    source: Source
    tokenization: core.Tokenization
    pipeline: core.Pipeline | None = None


@dataclass
class Lab:
    text: str
    columns: list[Column]
    embeddings: core.Embeddings | None = None
    lines: list[EmbeddingLine] = field(default_factory=list)
    ropes: list[RopeView] = field(default_factory=list)
    embeddings_note: str = ""

    @property
    def first(self) -> Column:
        return self.columns[0]


def analyse(
    text: str,
    choices: list[str],
    user: Any,
    *,
    pipelines: str = "first",
    embeddings: bool = True,
    parse_special: bool = False,
) -> Lab:
    """Tokenize the text with each chosen tokenizer; the pipeline for the first (or all), and the first
    one's embeddings and positions when it belongs to a model. Special-token characters in the text stay
    text unless `parse_special`. Raises LookupError or TokenizeError."""
    columns = []
    for n, choice in enumerate(choices):
        source = resolve(choice, user)
        if pipelines == "all" or (pipelines == "first" and n == 0):
            steps = core.pipeline(source.tokenizer, text, parse_special=parse_special)
            columns.append(Column(source, steps.tokenization, steps))
        else:
            columns.append(Column(source, core.tokenize(source.tokenizer, text, parse_special=parse_special)))
    lab = Lab(text, columns)
    if embeddings:
        add_embeddings(lab)
    return lab


def add_embeddings(lab: Lab) -> None:
    first = lab.first
    if first.source.model_name is None:
        lab.embeddings_note = (
            "A trained tokenizer has no model behind it, so there are no embeddings to look up."
        )
        return
    loaded = get_loaded(first.source.model_name)
    ids = first.tokenization.ids
    lab.embeddings = core.embed_tokens(loaded.model, ids, dims=EMBEDDING_DIMS, limit=EMBEDDING_ROWS)
    ropes = core.rope_of(loaded.model.config)
    lab.ropes = [rope_view(r) for r in ropes]
    scale = lab.embeddings.scale
    for row, token in zip(lab.embeddings.rows, first.tokenization.tokens, strict=False):
        angle = math.degrees(ropes[0].angles(row.position)[0]) % 360 if ropes else 0.0
        rad = math.radians(angle)
        hand = (f"{10 + 8 * math.cos(rad):.2f}", f"{10 - 8 * math.sin(rad):.2f}")
        lab.lines.append(EmbeddingLine(token, row.norm, sparkline(row.values, scale), round(angle, 1), hand))


def sparkline(values: list[float], scale: float, width: float = 192, height: float = 28) -> str:
    if not values:
        return ""
    step = width / max(len(values) - 1, 1)
    mid = height / 2
    return " ".join(f"{i * step:.1f},{mid - v / scale * (mid - 1):.1f}" for i, v in enumerate(values))


def rope_view(rope: core.Rope, height: float = 32) -> RopeView:
    """Bars of log10(theta_i): theta_0 = 1 is the full height, the slowest frequency a sliver."""
    logs = [math.log10(f) for f in rope.frequencies]
    low = min(logs) if logs and min(logs) < 0 else -1.0
    bars = []
    for i, v in enumerate(logs):
        h = height * (1 - v / low) + 1
        bars.append((f"{i * 4:.0f}", f"{height + 1 - h:.2f}", f"{h:.2f}"))
    turn = 2 * math.pi / rope.frequencies[-1] if rope.frequencies else 0.0
    return RopeView(rope, bars, turn, max(4 * len(bars), 4))


def chat(model_name: str, messages: list[dict[str, str]], generation_prompt: bool) -> core.ChatRendering:
    tokenizer = pretrained_tokenizer(model_name)
    return core.render_chat(tokenizer, messages, generation_prompt=generation_prompt)


# --- training -------------------------------------------------------------------------------------
def train_config(kind: str, vocab_size: int, options: dict[str, Any]) -> core.TrainConfig:
    return core.TrainConfig(
        kind=kind,
        vocab_size=vocab_size,
        unicode_form=options.get("unicode_form", ""),
        lowercase=bool(options.get("lowercase")),
        strip_accents=bool(options.get("strip_accents")),
    )


def describe_options(options: dict[str, Any]) -> str:
    parts = [options.get("unicode_form") or "", "lowercase" if options.get("lowercase") else ""]
    parts.append("accents stripped" if options.get("strip_accents") else "")
    return ", ".join(p for p in parts if p) or "no normalization"


def start_training(
    user: Any, data: dict[str, Any], inline_bytes: int, queue: Callable[[int], Any]
) -> TrainedTokenizer:
    """Train now when the text is small (raising TrainError on bad options); otherwise keep the text
    and hand the row's id to `queue` (the caller's worker task) once saved. Either way the tokenizer's
    row is returned."""
    options = {
        k: data.get(k) or v
        for k, v in {"unicode_form": "", "lowercase": False, "strip_accents": False}.items()
    }
    config = train_config(data["kind"], data["vocab_size"], options)
    config.check()
    corpus: str = data["corpus"]
    size = len(corpus.encode("utf-8"))
    row = TrainedTokenizer(
        owner=user,
        name=data.get("name") or f"my-{data['kind']}-{data['vocab_size']}",
        kind=data["kind"],
        vocab_size=data["vocab_size"],
        options=options,
        source=data.get("source", ""),
        training_bytes=size,
    )
    TrainedTokenizer.folder().mkdir(parents=True, exist_ok=True)
    if size <= inline_bytes:
        tokenizer = core.train_tokenizer(corpus.splitlines(keepends=True), config)
        row.save()
        keep(row, tokenizer)
        return row
    row.save()
    row.corpus_path.write_text(corpus, encoding="utf-8")
    transaction.on_commit(lambda: queue(row.pk))
    return row


def keep(row: TrainedTokenizer, tokenizer: Any) -> None:
    partial = row.path.with_suffix(".partial")
    tokenizer.save(str(partial))
    partial.replace(row.path)  # a reader never sees half a file
    row.status = TrainedTokenizer.Status.READY
    row.actual_vocab_size = tokenizer.get_vocab_size()
    row.finished = timezone.now()
    row.error = ""
    row.save()


def run_queued_training(tokenizer_id: int) -> str:
    """Train a queued tokenizer on its saved text (what the worker task does); returns the new status."""
    row = TrainedTokenizer.objects.filter(pk=tokenizer_id).first()
    if row is None or row.is_done:
        return row.status if row else "missing"
    row.status = TrainedTokenizer.Status.RUNNING
    row.save(update_fields=["status"])
    try:
        with row.corpus_path.open(encoding="utf-8") as lines:
            keep(row, core.train_tokenizer(lines, train_config(row.kind, row.vocab_size, row.options)))
    except Exception as exc:
        row.status = TrainedTokenizer.Status.FAILED
        row.error = str(exc) if isinstance(exc, TokenizeError) else f"{type(exc).__name__}: {exc}"[:1000]
        row.finished = timezone.now()
        row.save()
    row.corpus_path.unlink(missing_ok=True)
    return row.status


def trained_for(user: Any) -> list[TrainedTokenizer]:
    rows = list(TrainedTokenizer.objects.filter(owner=user))
    for row in rows:
        row.options_text = describe_options(row.options)  # type: ignore[attr-defined]
    return rows


def delete_trained(user: Any, tokenizer_id: int) -> bool:
    row = TrainedTokenizer.objects.filter(owner=user, pk=tokenizer_id).first()
    if row is None:
        return False
    row.path.unlink(missing_ok=True)
    row.corpus_path.unlink(missing_ok=True)
    row.delete()
    return True


# --- JSON -----------------------------------------------------------------------------------------
def token_json(token: core.Token) -> dict[str, Any]:
    return {
        "index": token.index,
        "id": token.id,
        "text": token.text,
        "display": token.display,
        "start": token.start,
        "end": token.end,
        "special": token.special,
        "byte": token.byte,
    }


def pipeline_json(steps: core.Pipeline) -> dict[str, Any]:
    return {
        "normalizer": steps.normalizer,
        "normalized": steps.normalized,
        "pre_tokenizer": steps.pre_tokenizer,
        "pre_tokens": [{"text": p.text, "start": p.start, "end": p.end} for p in steps.pre_tokens],
        "model": steps.model,
        "tokens": [t.text for t in steps.tokenization.tokens],
        "ids": steps.tokenization.ids,
        "decoder": steps.decoder,
    }


def lab_json(lab: Lab) -> dict[str, Any]:
    results = []
    for column in lab.columns:
        tk = column.tokenization
        result: dict[str, Any] = {
            "tokenizer": column.source.choice,
            "name": column.source.name,
            "tokens": [token_json(t) for t in tk.tokens],
            "counts": {
                "tokens": tk.counts.tokens,
                "characters": tk.counts.characters,
                "bytes": tk.counts.bytes,
                "characters_per_token": tk.counts.characters_per_token,
            },
            "round_trip": {"exact": tk.round_trip_exact, "decoded": tk.decoded},
        }
        if column.pipeline is not None:
            result["pipeline"] = pipeline_json(column.pipeline)
        results.append(result)
    if lab.embeddings is not None or lab.embeddings_note:
        results[0]["embeddings"] = embeddings_json(lab)
    return {"results": results}


def embeddings_json(lab: Lab) -> dict[str, Any]:
    if lab.embeddings is None:
        return {"note": lab.embeddings_note}
    emb = lab.embeddings
    return {
        "model": lab.first.source.model_name,
        "hidden_size": emb.hidden_size,
        "dims": emb.dims,
        "total_tokens": emb.total_tokens,
        "rows": [
            {"position": r.position, "id": r.token_id, "norm": r.norm, "values": r.values} for r in emb.rows
        ],
        "rope": [
            {
                "layers": v.rope.label or "all",
                "base": v.rope.base,
                "rotary_dim": v.rope.rotary_dim,
                "rope_type": v.rope.rope_type,
                "frequencies": v.rope.frequencies,
            }
            for v in lab.ropes
        ],
    }
