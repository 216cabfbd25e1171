"""Evaluation suites: read a suite's items from JSONL or CSV, validate every item with a line number a
person can find, and list the suites shipped with the project.

JSONL, one object a line:

    {"input": "What is the capital of France?", "references": ["Paris"], "tags": ["geography"]}

Keys: "input" (required), "references" (a list of strings) or "reference" (one string), "tags" (a list of
strings: the axes a score is broken down by), "rubric" (text for a person or a judge), "checks" (a list of
objects, each with a string "check", for instruction following: {"check": "max_words", "n": 20}; the
checks and their parameters are llmcore.eval_checks'). An item
needs a reference or checks. CSV: a header row with "input" and "reference" or "references" (several
references in one cell separated by REFERENCE_SEPARATOR), optional "tags" (separated by commas), "rubric",
and "checks" (a JSON list, as in JSONL).

Line numbers are 1-based: the line of a JSONL file, the line a CSV row ends on (the header is line 1); 0 is
the file as a whole. Every problem is reported at once (up to MAX_ERRORS); nothing is ever cut to fit: an
item over a limit is refused with the limit.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcore import eval_metrics
from llmcore.datasets import DatasetError as SuiteError  # a problem on a line of an upload, as there
from llmcore.datasets import jsonl_records
from llmcore.eval_checks import check_problems
from llmcore.text import JsonTooDeep, json_type, loads_json, text_problem

TASKS = {
    "qa": "Question answering",
    "summarization": "Summarization",
    "translation": "Translation",
    "classification": "Classification",
    "nli": "Natural language inference",
    "extraction": "Extraction",
    "instructions": "Instruction following",
}
_METRIC_LABELS = {"exact_match": "Exact match", "token_f1": "Token F1", "bleu": "BLEU", "chrf": "chrF",
                  "rouge": "ROUGE", "accuracy": "Accuracy", "checks": "Instruction checks"}  # fmt: skip
# The names are llmcore.eval_metrics' registry's, so a suite never names a metric no run can score.
METRICS = {name: _METRIC_LABELS.get(name, name) for name in eval_metrics.METRICS}
LABELLED_TASKS = ("classification", "nli")  # their references are labels, named by the suite
KEYS = ("input", "references", "reference", "tags", "rubric", "checks")
REFERENCE_SEPARATOR = "||"  # between several references in one CSV cell
TAG_SEPARATOR = ","  # between tags in one CSV cell
MAX_BYTES = 1024 * 1024
MAX_ITEMS = 1000
MAX_INPUT_CHARS = 4000
MAX_REFERENCE_CHARS = 2000
MAX_REFERENCES = 10
MAX_RUBRIC_CHARS = 2000
MAX_TAGS = 10
MAX_TAG_CHARS = 40
MAX_CHECKS = 10
MAX_LABELS = 20
MAX_LABEL_CHARS = 40
MAX_ERRORS = 50  # more are summarized in one line
SUITES_DIR = Path(__file__).resolve().parent / "data" / "suites"


@dataclass
class SuiteItemSpec:
    input: str
    references: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    rubric: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ParsedSuite:
    items: list[SuiteItemSpec] = field(default_factory=list)
    errors: list[SuiteError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.items)


@dataclass(frozen=True)
class ShippedSuite:
    """A suite written for the project, in SUITES_DIR/<file>."""

    name: str
    task: str
    metrics: tuple[str, ...]
    description: str
    file: str
    labels: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return SUITES_DIR / self.file


SHIPPED_SUITES = (
    ShippedSuite("Short questions", "qa", ("exact_match", "token_f1"),
                 "Factual questions with one short answer each.", "qa.jsonl"),
    ShippedSuite("One-line summaries", "summarization", ("rouge",),
                 "Short paragraphs to summarize in one sentence.", "summarization.jsonl"),
    ShippedSuite("English to French", "translation", ("bleu", "chrf"),
                 "Short everyday sentences to translate into French.", "translation_en_fr.jsonl"),
    ShippedSuite("Review sentiment", "classification", ("accuracy",),
                 "Short reviews to label positive, negative or neutral.", "sentiment.jsonl",
                 ("positive", "negative", "neutral")),
    ShippedSuite("Does it follow?", "nli", ("accuracy",),
                 "A premise and a hypothesis: entailment, neutral or contradiction.", "nli.jsonl",
                 ("entailment", "neutral", "contradiction")),
    ShippedSuite("Dates and names", "extraction", ("exact_match", "token_f1"),
                 "Pull one date or name out of a sentence.", "extraction.jsonl"),
    ShippedSuite("Follow the format", "instructions", ("checks",),
                 "Instructions whose format code can verify: word limits, JSON, no commas.",
                 "instructions.jsonl"),
)  # fmt: skip


def settings_problems(task: str, metrics: list[str], labels: list[str]) -> dict[str, list[str]]:
    """What is wrong with a suite's task, metrics and labels, by field ("task", "metrics", "labels")."""
    problems: dict[str, list[str]] = {}
    if task not in TASKS:
        problems["task"] = [f"Unknown task {task!r}: use one of {', '.join(TASKS)}."]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        problems["metrics"] = [f"Unknown metric {', '.join(map(repr, unknown))}: use {', '.join(METRICS)}."]
    elif not metrics:
        problems["metrics"] = ["Choose at least one metric."]
    elif "accuracy" in metrics and task not in LABELLED_TASKS:
        problems["metrics"] = ["Accuracy needs labels: it is for classification and NLI suites."]
    label_problems = _labels_problems(task, labels)
    if label_problems:
        problems["labels"] = label_problems
    return problems


def _labels_problems(task: str, labels: list[str]) -> list[str]:
    if task not in LABELLED_TASKS:
        return ["Labels are only for classification and NLI suites."] if labels else []
    if len(labels) < 2:
        return [f"A {TASKS[task].lower()} suite needs at least two labels (its references are labels)."]
    if len(labels) > MAX_LABELS:
        return [f"At most {MAX_LABELS} labels (there are {len(labels)})."]
    problems = [f"The label {label[:50]!r} is longer than {MAX_LABEL_CHARS} characters."
                for label in labels if len(label) > MAX_LABEL_CHARS]  # fmt: skip
    problems += [p for label in labels if (p := text_problem(label, "A label"))]
    if len(set(labels)) != len(labels):
        problems.append("Each label once: some are repeated.")
    if any(not label.strip() for label in labels):
        problems.append("A label is empty.")
    return problems


def parse_suite(
    data: bytes,
    filename: str,
    *,
    labels: list[str] | tuple[str, ...] = (),
    need_checks: bool = False,
    max_bytes: int = MAX_BYTES,
    max_items: int = MAX_ITEMS,
) -> ParsedSuite:
    """Read and validate a suite file. Never raises on bad input: problems come back in `.errors`.

    `labels`: when given, every reference must be one of them. `need_checks`: every item must have checks
    (a suite scored by the "checks" metric)."""
    if len(data) > max_bytes:
        return _fail(f"The file is {len(data):,} bytes; the limit is {max_bytes:,} bytes.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
        line = body.count(b"\n", 0, exc.start) + 1
        return ParsedSuite(errors=[SuiteError(line, "not UTF-8 text: save the file as UTF-8.")])
    if not text.strip():
        return _fail("The suite is empty.")
    is_csv = Path(filename).suffix.lower() == ".csv"
    records, errors = _csv_records(text) if is_csv else jsonl_records(text)
    parsed = ParsedSuite(errors=errors)
    if len(records) > max_items:
        parsed.errors.append(
            SuiteError(records[max_items][0], f"too many items: the limit is {max_items}; remove the rest.")
        )
        records = records[:max_items]
    for number, record in records:
        item, problems = validate_item(record, labels=labels, need_checks=need_checks, from_csv=is_csv)
        parsed.errors += [SuiteError(number, p) for p in problems]
        if item is not None:
            parsed.items.append(item)
    if not records and not parsed.errors:
        parsed.errors.append(SuiteError(0, "The suite has no items."))
    parsed.errors.sort(key=lambda e: e.line)
    if len(parsed.errors) > MAX_ERRORS:
        more = len(parsed.errors) - MAX_ERRORS
        parsed.errors = [*parsed.errors[:MAX_ERRORS], SuiteError(0, f"…and {more} more problems.")]
    return parsed


def load_shipped(suite: ShippedSuite) -> ParsedSuite:
    return parse_suite(
        suite.path.read_bytes(), suite.file, labels=suite.labels, need_checks="checks" in suite.metrics
    )


def _fail(message: str) -> ParsedSuite:
    return ParsedSuite(errors=[SuiteError(0, message)])


def _csv_records(text: str) -> tuple[list[tuple[int, Any]], list[SuiteError]]:
    reader = csv.DictReader(io.StringIO(text), strict=True)
    records: list[tuple[int, Any]] = []
    errors: list[SuiteError] = []
    ended = 1
    try:
        for row in reader:
            if None in row:
                errors.append(SuiteError(reader.line_num, "more cells than the header has columns."))
            records.append((reader.line_num, {k: v for k, v in row.items() if k is not None and v}))
            ended = reader.line_num
    except csv.Error as exc:
        errors.append(SuiteError(ended + 1, f"not valid CSV ({exc})."))
    header = reader.fieldnames or []
    if "input" not in header:
        return [], [SuiteError(1, "the CSV header needs an 'input' column.")]
    unknown = [name for name in header if name not in KEYS]
    if unknown:
        errors.append(
            SuiteError(1, f"unknown columns {', '.join(map(repr, unknown))}: use {', '.join(KEYS)}.")
        )
    return records, errors


def _csv_cells(record: dict[str, Any]) -> dict[str, Any]:
    """A CSV row as the JSONL object it stands for: split references and tags, read the checks' JSON."""
    out: dict[str, Any] = dict(record)
    for key in ("references", "reference"):
        if key in out:
            out["references"] = [r.strip() for r in out.pop(key).split(REFERENCE_SEPARATOR)]
    if "tags" in out:
        out["tags"] = [t.strip() for t in out["tags"].split(TAG_SEPARATOR) if t.strip()]
    if "checks" in out:
        try:
            out["checks"] = loads_json(out["checks"])
        except (JsonTooDeep, json.JSONDecodeError):
            out["checks"] = None  # refused below as not a list
    return out


def validate_item(
    record: Any,
    *,
    labels: list[str] | tuple[str, ...] = (),
    need_checks: bool = False,
    from_csv: bool = False,
) -> tuple[SuiteItemSpec | None, list[str]]:
    """One item, or the problems that refuse it."""
    if not isinstance(record, dict):
        return None, [f"an item must be a JSON object, not {json_type(record)}."]
    if from_csv:
        record = _csv_cells(record)
    problems = [f"unknown key {key!r}: use {', '.join(KEYS)}." for key in record if key not in KEYS]
    if "reference" in record and "references" in record:
        problems.append("give 'reference' or 'references', not both.")
    references = record.get("references", [record["reference"]] if "reference" in record else [])
    item_input = _text(record.get("input"), "'input'", MAX_INPUT_CHARS, problems, required=True)
    refs = _texts(references, "'references'", MAX_REFERENCES, MAX_REFERENCE_CHARS, problems)
    tags = _texts(record.get("tags", []), "'tags'", MAX_TAGS, MAX_TAG_CHARS, problems)
    rubric = _text(record.get("rubric", ""), "'rubric'", MAX_RUBRIC_CHARS, problems)
    checks = _checks(record.get("checks", []), problems)
    if labels:
        problems += [f"the reference {r!r} is not one of the labels ({', '.join(labels)})."
                     for r in refs if r not in labels]  # fmt: skip
    if need_checks and not checks and isinstance(record.get("checks", []), list):
        problems.append("this suite is scored by its checks: give the item 'checks'.")
    if not refs and not checks and not problems:
        problems.append("an item needs 'references' (or 'reference') or 'checks'.")
    if problems:
        return None, problems
    return SuiteItemSpec(item_input, refs, tags, rubric, checks), []


def _text(value: Any, what: str, limit: int, problems: list[str], required: bool = False) -> str:
    if value is None or value == "":
        if required:
            problems.append(f"{what} is missing: every item needs one.")
        return ""
    if not isinstance(value, str):
        problems.append(f"{what} must be a string, not {json_type(value)}.")
        return ""
    problem = text_problem(value, what)
    if problem:
        problems.append(problem)
    elif len(value) > limit:
        problems.append(f"{what} is longer than {limit:,} characters (it has {len(value):,}): shorten it.")
    elif required and not value.strip():
        problems.append(f"{what} is blank.")
    return value


def _list_problem(value: Any, what: str, of: str, most: int) -> str | None:
    if not isinstance(value, list):
        return f"{what} must be a list of {of}, not {json_type(value)}."
    if len(value) > most:
        return f"{what} has {len(value)} entries; the limit is {most}."
    return None


def _texts(value: Any, what: str, most: int, limit: int, problems: list[str]) -> list[str]:
    problem = _list_problem(value, what, "strings", most)
    if problem:
        problems.append(problem)
        return []
    found = len(problems)
    texts = [_text(v, f"an entry of {what}", limit, problems) for v in value]
    if len(problems) == found and any(not t.strip() for t in texts):
        problems.append(f"{what} has an empty entry.")
    return texts


def _checks(value: Any, problems: list[str]) -> list[dict[str, Any]]:
    problem = _list_problem(value, "'checks'", "objects", MAX_CHECKS)
    if problem:
        problems.append(problem)
        return []
    for number, spec in enumerate(value, start=1):
        if not isinstance(spec, dict) or not isinstance(spec.get("check"), str):
            problems.append(
                f'check {number} must be an object with a string \'check\', like {{"check": "json"}}.'
            )
            continue
        problems += [f"check {number}: {p}" for p in check_problems(spec)]  # its name and parameters
    return value
