from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import models


class TrainedTokenizer(models.Model):
    """A tokenizer someone trained in the tokenizer lab. Only its owner sees and uses it.

    The tokenizer itself is a `tokenizers` JSON file under DATA_DIR/tokenizers/, named after `key` (a
    generated UUID), never after anything a person typed; big training texts wait next to it as
    `<key>.txt` until a worker has trained on them.
    """

    class Kind(models.TextChoices):
        BPE = "bpe", "BPE (byte-level)"
        UNIGRAM = "unigram", "Unigram"
        WORDPIECE = "wordpiece", "WordPiece"

    class Status(models.TextChoices):
        PENDING = "pending", "waiting for a worker"
        RUNNING = "running", "training"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tokenizers")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    vocab_size = models.PositiveIntegerField(help_text="The vocabulary size asked for.")
    actual_vocab_size = models.PositiveIntegerField(null=True, blank=True, help_text="What training reached.")
    options = models.JSONField(
        default=dict, help_text="Normalization: unicode_form, lowercase, strip_accents."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    source = models.CharField(
        max_length=255, blank=True, help_text="Pasted text, or the uploaded file's name."
    )
    training_bytes = models.PositiveBigIntegerField(default=0)
    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()}, {self.owner})"

    @staticmethod
    def folder() -> Path:
        return Path(settings.DATA_DIR) / "tokenizers"

    @property
    def path(self) -> Path:
        return self.folder() / f"{self.key.hex}.json"

    @property
    def corpus_path(self) -> Path:
        return self.folder() / f"{self.key.hex}.txt"

    @property
    def choice_value(self) -> str:
        return f"trained:{self.pk}"

    @property
    def is_done(self) -> bool:
        return self.status in {self.Status.READY, self.Status.FAILED}
