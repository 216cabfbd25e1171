"""Training datasets: store an upload, a paste or a shipped sample under DATA_DIR/datasets/ with a generated
name, parse it with llmcore.datasets, and preview rows through a model's tokenizer."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from llmcore import datasets as core_datasets
from llmcore.tokenize import load_pretrained_tokenizer
from playground.core.services import PlaygroundError, model_store
from playground.jobs.models import Dataset

SUFFIXES = (".jsonl", ".json", ".csv", ".txt")


class DatasetRejected(PlaygroundError):
    """The upload itself is refused (size, type); the message is for the user."""


def sample_datasets() -> dict[str, Path]:
    return dict(core_datasets.SAMPLE_DATASETS)


def suffix_of(filename: str) -> str:
    """The file type from the user's filename, the only part of it that is ever used (never as a path)."""
    suffix = Path(filename.replace("\\", "/")).suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetRejected(f"Unsupported file type {suffix or '(none)'}: use {', '.join(SUFFIXES)}.")
    return suffix


def display_name(filename: str) -> str:
    """A name to show: the last part of what the user called it, without any folders."""
    name = Path(filename.replace("\\", "/")).name.strip()
    return (name or "dataset")[:200]


def too_big(size: int) -> str:
    return f"The dataset is {size:,} bytes; the limit is {settings.DATASET_MAX_BYTES:,} bytes."


def datasets_dir() -> Path:
    folder = Path(settings.DATA_DIR) / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_dataset(owner: Any, data: bytes, filename: str, sample: str = "") -> Dataset:
    """Store the bytes under a generated name, parse them and record the rows, errors and warnings."""
    if len(data) > settings.DATASET_MAX_BYTES:
        raise DatasetRejected(too_big(len(data)))
    if not data.strip():
        raise DatasetRejected("The dataset is empty.")
    suffix = suffix_of(filename)
    parsed = core_datasets.parse_dataset(data, f"dataset{suffix}", settings.DATASET_MAX_ROWS)
    file_name = f"{uuid.uuid4().hex}{suffix}"
    path = (datasets_dir() / file_name).resolve()
    if path.parent != datasets_dir().resolve():  # cannot happen with a generated name; kept as a guard
        raise DatasetRejected("Invalid dataset name.")
    path.write_bytes(data)
    return Dataset.objects.create(
        owner=owner,
        name=display_name(filename),
        file_name=file_name,
        original_suffix=suffix,
        format=parsed.format or "",
        rows=len(parsed.rows),
        size_bytes=len(data),
        errors=[{"line": e.line, "message": e.message} for e in parsed.errors],
        warnings=[str(w) for w in parsed.warnings],
        sample=sample,
    )


def save_sample(owner: Any, name: str) -> Dataset:
    samples = sample_datasets()
    if name not in samples:
        raise DatasetRejected(f"No sample dataset named {name!r}.")
    existing = Dataset.objects.filter(owner=owner, sample=name).first()
    if existing and existing.path.is_file():
        return existing
    path = samples[name]
    return save_dataset(owner, path.read_bytes(), path.name, sample=name)


def parsed_dataset(dataset: Dataset) -> Any:
    return core_datasets.parse_dataset(
        dataset.path.read_bytes(), f"dataset{dataset.original_suffix}", settings.DATASET_MAX_ROWS
    )


def preview_dataset(dataset: Dataset, model_name: str, n: int = 3, max_seq_len: int = 256) -> list[Any]:
    """The first rows as `model_name`'s tokenizer cuts them, with the tokens that count for the loss."""
    parsed = parsed_dataset(dataset)
    if not parsed.rows:
        return []
    tokenizer = load_pretrained_tokenizer(model_store().path(model_name))
    return list(core_datasets.preview(tokenizer, parsed, n=n, max_seq_len=max_seq_len))
