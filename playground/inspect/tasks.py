"""Worker tasks of the inspect tools. Tasks take row ids and leave the work to services."""

from __future__ import annotations

from celery import shared_task

from playground.inspect.services.tokenize import run_queued_training


@shared_task(name="inspect.train_tokenizer_task", queue="cpu")
def train_tokenizer_task(tokenizer_id: int) -> str:
    """Train a tokenizer whose text was too big to train during the web request; returns its status."""
    return run_queued_training(tokenizer_id)
