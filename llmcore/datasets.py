"""Training datasets: parse an upload (JSONL, JSON, CSV, TXT or pasted text), detect its format, validate
every row with a line number the user can find, and preview how rows reach the model.

Formats (detected from the keys of the rows):

- text:        {"text": ...}; a TXT file is split into rows at blank lines. Every token counts for the loss.
- instruction: {"instruction", "input" (optional), "output"}; becomes a user turn and an assistant turn.
- chat:        {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}, ending with an
               assistant turn. Only assistant tokens count for the loss.
- preference:  {"prompt", "chosen", "rejected"}, for DPO.

Line numbers are 1-based: the line of a JSONL file, the position in a JSON array, the line of a CSV file
(the header is line 1). The loss mask is worked out once, in `encode_messages`, and used both by the preview
and by training (llmcore.finetune_trainers), so what the preview highlights is exactly what the model learns
from.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcore.encoding import encode_chat, encode_text
from llmcore.text import JsonTooDeep, loads_json, text_problem

FORMATS = ("text", "instruction", "chat", "preference")
ROLES = ("system", "user", "assistant")
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
MAX_ERRORS = 50  # more are summarized in one line: a broken file should not produce a wall of errors
DATA_DIR = Path(__file__).resolve().parent / "data"
SAMPLE_DATASETS = {
    "pirate-instructions": DATA_DIR / "pirate_instructions.jsonl",
    "helpful-preferences": DATA_DIR / "helpful_preferences.jsonl",
}
# Used when a base model has no chat template of its own, and written into the output model with it.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '### ' + message['role'] | capitalize + ':\n' + message['content'] "
    "+ '\n\n' }}{% endfor %}{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)


@dataclass
class DatasetError:
    line: int  # 1-based; 0 for the file as a whole
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class ParsedDataset:
    format: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[DatasetError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.rows)


@dataclass
class PreviewExample:
    tokens: list[tuple[str, bool]]  # (token text, counts for the loss)
    truncated: bool
    total_tokens: int  # before truncation
    loss_tokens: int


@dataclass
class Encoded:
    input_ids: list[int]
    labels_mask: list[bool]
    truncated: bool
    total_tokens: int


# --- parsing ---------------------------------------------------------------------------------------
def parse_dataset(data: bytes, filename: str, max_rows: int = MAX_ROWS) -> ParsedDataset:
    """Parse and validate an upload. Never raises on bad input: problems come back in `.errors`."""
    if len(data) > MAX_UPLOAD_BYTES:
        return _fail(f"The file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _not_utf8(data, exc)
    if not text.strip():
        return _fail("The dataset is empty.")
    kind = _kind(text, filename)
    records: list[tuple[int, Any]] = []
    errors: list[DatasetError] = []
    if kind == "jsonl":
        records, errors = jsonl_records(text)
    elif kind == "json":
        try:
            value = loads_json(text)
        except JsonTooDeep as exc:
            return _fail(str(exc))
        except json.JSONDecodeError as exc:
            return _fail(f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.")
        if not isinstance(value, list):
            return _fail("A JSON dataset must be an array of objects, one per example.")
        records = [(i, item) for i, item in enumerate(value, start=1)]
    elif kind == "csv":
        # strict: a quote that is never closed is an error, not a field that swallows every later row.
        reader = csv.DictReader(io.StringIO(text), strict=True)
        ended = 1  # the line the last row read ended on (the header's, at first)
        try:
            for csv_row in reader:
                records.append((reader.line_num, {k: v for k, v in csv_row.items() if k is not None}))
                ended = reader.line_num
        except csv.Error as exc:
            errors.append(DatasetError(ended + 1, _csv_problem(exc)))
        if reader.fieldnames is None:
            return _fail("The CSV file has no header row.")
    else:
        records = _paragraphs(text)
    parsed = ParsedDataset(format=None, errors=errors)
    if len(records) > max_rows:
        parsed.errors.append(
            DatasetError(records[max_rows][0], f"too many rows: the limit is {max_rows}; remove the rest.")
        )
        records = records[:max_rows]
    parsed.format = detect_format([r for _, r in records])
    if parsed.format is None:
        parsed.errors.insert(
            0,
            DatasetError(
                0,
                "Could not tell the format from the keys. Use 'text'; 'instruction' + 'output' (+ 'input'); "
                "'messages'; or 'prompt' + 'chosen' + 'rejected'.",
            ),
        )
        return _capped(parsed)
    for number, record in records:
        if kind == "csv" and parsed.format == "chat" and isinstance(record.get("messages"), str):
            try:
                record["messages"] = loads_json(record["messages"])
            except JsonTooDeep as exc:
                parsed.errors.append(DatasetError(number, f"'messages': {exc}"))
                continue
            except json.JSONDecodeError:
                parsed.errors.append(DatasetError(number, "'messages' is not a JSON list of messages."))
                continue
        clean, problem = validate_row(record, parsed.format)
        if clean is None:
            parsed.errors.append(DatasetError(number, problem or "invalid row."))
        else:
            parsed.rows.append(clean)
    _add_warnings(parsed)
    return _capped(parsed)


def jsonl_records(text: str) -> tuple[list[tuple[int, Any]], list[DatasetError]]:
    """Each non-blank line's JSON value with its line number, and the lines that are not JSON (also read
    by llmcore.eval_suites)."""
    records: list[tuple[int, Any]] = []
    errors: list[DatasetError] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append((number, loads_json(line)))
            except JsonTooDeep as exc:
                errors.append(DatasetError(number, str(exc)))
            except json.JSONDecodeError as exc:
                errors.append(DatasetError(number, f"not valid JSON ({exc.msg}, column {exc.colno})."))
    return records, errors


def load_sample(name: str, max_rows: int = MAX_ROWS) -> ParsedDataset:
    path = SAMPLE_DATASETS[name]
    return parse_dataset(path.read_bytes(), path.name, max_rows)


def _fail(message: str) -> ParsedDataset:
    return ParsedDataset(format=None, errors=[DatasetError(0, message)])


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> ParsedDataset:
    """Where the first byte that is not UTF-8 is, as a line and a byte in it a person can find."""
    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data  # offsets skip it
    line_start = body.rfind(b"\n", 0, exc.start) + 1
    return ParsedDataset(
        format=None,
        errors=[
            DatasetError(
                body.count(b"\n", 0, exc.start) + 1,
                f"not UTF-8 text (byte {exc.start - line_start + 1} of the line, {body[exc.start]:#04x}, "
                "cannot be decoded). Save the file as UTF-8.",
            )
        ],
    )


def _csv_problem(exc: csv.Error) -> str:
    if "unexpected end of data" in str(exc):
        return 'not valid CSV: a quoted field starting on this line is never closed (a " is missing).'
    return f"not valid CSV ({exc})."


def _kind(text: str, filename: str) -> str:
    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix in {"jsonl", "json", "csv", "txt"}:
        return suffix
    stripped = text.lstrip()  # pasted text: sniff
    if stripped.startswith("["):
        return "json"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and all(line.startswith("{") for line in lines):
        return "jsonl"
    return "txt"


def _paragraphs(text: str) -> list[tuple[int, Any]]:
    rows: list[tuple[int, Any]] = []
    start, current = 0, []  # type: tuple[int, list[str]]
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            rows.append((start, {"text": "\n".join(current)}))
            current = []
    if current:
        rows.append((start, {"text": "\n".join(current)}))
    return rows


def detect_format(records: list[Any]) -> str | None:
    """The format the most rows look like (so one broken row does not hide the format of the rest)."""
    votes = {name: 0 for name in FORMATS}
    for record in records[:200]:
        if not isinstance(record, dict):
            continue
        keys = set(record)
        if "messages" in keys:
            votes["chat"] += 1
        elif {"prompt", "chosen", "rejected"} & keys and {"chosen", "rejected"} <= keys | {"prompt"}:
            votes["preference"] += 1
        elif "instruction" in keys or "output" in keys:
            votes["instruction"] += 1
        elif "text" in keys:
            votes["text"] += 1
    best = max(FORMATS, key=lambda name: votes[name])
    return best if votes[best] else None


REQUIRED = {
    "text": ("text",),
    "instruction": ("instruction", "output"),
    "preference": ("prompt", "chosen", "rejected"),
}


def validate_row(record: Any, fmt: str) -> tuple[dict[str, Any] | None, str | None]:
    """A normalized row, or the reason it is refused."""
    if not isinstance(record, dict):
        return None, f"expected an object with keys, got {type(record).__name__}."
    if fmt == "chat":
        return _validate_chat(record.get("messages"))
    row: dict[str, Any] = {}
    for key in REQUIRED[fmt]:
        value = record.get(key)
        if value is None:
            return None, f"missing '{key}'."
        if not isinstance(value, str):
            return None, f"'{key}' must be text, got {type(value).__name__}."
        if not value.strip():
            return None, f"'{key}' is empty."
        if problem := text_problem(value, f"'{key}'"):
            return None, problem
        row[key] = value
    if fmt == "instruction":
        extra = record.get("input") or ""
        if not isinstance(extra, str):
            return None, f"'input' must be text, got {type(extra).__name__}."
        if problem := text_problem(extra, "'input'"):
            return None, problem
        row["input"] = extra
    return row, None


def _validate_chat(messages: Any) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(messages, list) or not messages:
        return None, "'messages' must be a non-empty list of {role, content} objects."
    clean = []
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            return None, f"message {i} is not an object."
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return None, f"message {i} has role {role!r}; roles are {', '.join(ROLES)}."
        if role == "system" and i != 1:
            return None, f"message {i}: a system message can only come first."
        if not isinstance(content, str) or not content.strip():
            return None, f"message {i} ({role}) has no text content."
        if problem := text_problem(content, f"message {i} ({role})"):
            return None, problem
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in clean):
        return None, "the conversation has no user message."
    if clean[-1]["role"] != "assistant":
        return None, "the conversation must end with an assistant message (that is what the model learns)."
    return {"messages": clean}, None


def _add_warnings(parsed: ParsedDataset) -> None:
    seen: set[str] = set()
    duplicates = 0
    for row in parsed.rows:
        key = json.dumps(row, sort_keys=True)
        duplicates += key in seen
        seen.add(key)
    if duplicates:
        parsed.warnings.append(f"{duplicates} row(s) are exact duplicates of earlier rows.")
    if parsed.format == "preference":
        same = sum(r["chosen"].strip() == r["rejected"].strip() for r in parsed.rows)
        if same:
            parsed.warnings.append(
                f"{same} row(s) have the same chosen and rejected answer; they teach nothing."
            )
    if 0 < len(parsed.rows) < 8:
        parsed.warnings.append(f"Only {len(parsed.rows)} rows: expect the model to memorize them.")


def _capped(parsed: ParsedDataset) -> ParsedDataset:
    if len(parsed.errors) > MAX_ERRORS:
        rest = len(parsed.errors) - MAX_ERRORS
        parsed.errors = parsed.errors[:MAX_ERRORS] + [DatasetError(0, f"...and {rest} more errors.")]
    return parsed


# --- rows -> tokens ---------------------------------------------------------------------------------
def to_messages(row: dict[str, Any], fmt: str) -> list[dict[str, str]]:
    """The conversation a row stands for (preference rows: the prompt and the chosen answer)."""
    if fmt == "chat":
        return list(row["messages"])
    if fmt == "instruction":
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    if fmt == "preference":
        return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["chosen"]}]
    raise ValueError(f"format {fmt!r} has no messages")


def ensure_chat_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE


def encode_row(tokenizer: Any, row: dict[str, Any], fmt: str, max_seq_len: int) -> Encoded:
    if fmt == "text":
        ids = encode_text(tokenizer, row["text"], add_special_tokens=False)
        if tokenizer.eos_token_id is not None:
            ids = [*ids, tokenizer.eos_token_id]
        return _truncate(ids, [True] * len(ids), max_seq_len)
    return encode_messages(tokenizer, to_messages(row, fmt), max_seq_len)


def encode_messages(tokenizer: Any, messages: list[dict[str, str]], max_seq_len: int) -> Encoded:
    """Token ids of the rendered conversation and which of them count for the loss: the assistant turns
    (their text and the end-of-turn marker), never the prompt. Each assistant turn's tokens are found by
    encoding the conversation up to it with and without that turn: the tokens between the two count.
    Special-token characters inside messages stay text (llmcore.encoding), as they do in chat.
    """
    ensure_chat_template(tokenizer)
    full = encode_chat(tokenizer, messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = encode_chat(tokenizer, messages[:i], add_generation_prompt=True) if i else []
        through = encode_chat(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if full[: len(through)] == through and through[: len(before)] == before:
            spans.append((len(before), len(through)))
    if not spans:  # a template that rewrites earlier turns: count what follows the prompt of the last answer
        prompt = (
            encode_chat(tokenizer, messages[:-1], add_generation_prompt=True) if len(messages) > 1 else []
        )
        start = len(prompt) if full[: len(prompt)] == prompt else 0
        spans = [(start, len(full))]
    mask = [any(a <= i < b for a, b in spans) for i in range(len(full))]
    return _truncate(full, mask, max_seq_len)


def _truncate(ids: list[int], mask: list[bool], max_seq_len: int) -> Encoded:
    total = len(ids)
    return Encoded(ids[:max_seq_len], mask[:max_seq_len], total > max_seq_len, total)


def preview(
    tokenizer: Any, parsed: ParsedDataset, n: int = 3, max_seq_len: int = 512
) -> list[PreviewExample]:
    """The first `n` rows as the model will see them, with the tokens that count for the loss marked."""
    examples = []
    for row in parsed.rows[:n]:
        encoded = encode_row(tokenizer, row, parsed.format or "text", max_seq_len)
        tokens = [tokenizer.decode([token_id]) for token_id in encoded.input_ids]
        examples.append(
            PreviewExample(
                tokens=list(zip(tokens, encoded.labels_mask, strict=True)),
                truncated=encoded.truncated,
                total_tokens=encoded.total_tokens,
                loss_tokens=sum(encoded.labels_mask),
            )
        )
    return examples
