from __future__ import annotations

from django.db import models


class ModelEntry(models.Model):
    """A model in the store, mirrored in the database so jobs, chats and evaluations can point at it.

    The store folder is the source of truth for files and facts; `services.sync_catalog` keeps these rows
    in step with it (a model removed from disk disappears from the catalog).
    """

    name = models.CharField(max_length=64, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    source = models.CharField(max_length=500)
    license = models.CharField(max_length=100, default="unknown")
    method = models.CharField(max_length=50, default="import")
    sha256 = models.CharField(max_length=64)
    created = models.DateTimeField()
    family = models.CharField(max_length=50)
    architecture = models.CharField(max_length=100)
    parameters = models.BigIntegerField()
    layers = models.IntegerField(null=True)
    attention_heads = models.IntegerField(null=True)
    kv_heads = models.IntegerField(null=True)
    hidden_size = models.IntegerField(null=True)
    vocab_size = models.IntegerField(null=True)
    context_length = models.IntegerField(null=True)
    dtype = models.CharField(max_length=20)
    size_bytes = models.BigIntegerField()
    is_encoder_only = models.BooleanField(default=False)
    meta = models.JSONField(default=dict)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "model entries"

    def __str__(self) -> str:
        return self.name

    @property
    def kind(self) -> str:
        if self.method.startswith("import"):
            return "base"
        return {"quantize": "quantized"}.get(self.method, "fine-tuned")

    @property
    def uses_gqa(self) -> bool:
        return bool(self.kv_heads and self.attention_heads and self.kv_heads < self.attention_heads)
