from __future__ import annotations

from django.conf import settings
from django.db import models


class ModelEntry(models.Model):
    """A model in the store, mirrored in the database so jobs, chats and evaluations can point at it.

    The store folder is the source of truth for files and facts; `services.sync_catalog` keeps these rows
    in step with it (a model removed from disk disappears from the catalog).

    Who may see a model: everyone when `shared`, else its owner and admins. Base models (imported or
    pulled) have no owner and are shared; a model a job made belongs to the job's owner and is private
    until they share it. A made model whose owner is gone (owner null, not shared) is for admins only.
    Owner and sharing are written into the store's meta.json too, so a rebuilt catalog keeps them.
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
    # What sets otherwise similar models apart (see llmcore.store.ModelFacts for what each one means).
    attention = models.CharField(max_length=20, default="causal")
    sliding_window = models.IntegerField(null=True)
    sliding_window_layers = models.IntegerField(default=0)
    head_dim = models.IntegerField(null=True)
    intermediate_size = models.IntegerField(null=True)
    activation = models.CharField(max_length=40, blank=True, default="")
    tie_word_embeddings = models.BooleanField(null=True)
    positional = models.CharField(max_length=40, blank=True, default="")
    rope_theta = models.FloatField(null=True)
    rope_theta_sliding = models.FloatField(null=True)
    meta = models.JSONField(default=dict)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,  # not shared either: the model is then for admins only
        related_name="models_made",
    )
    shared = models.BooleanField(default=False)  # private unless the store says otherwise (fail closed)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "model entries"

    def __str__(self) -> str:
        return self.name

    # What each kind means, for the badge's tooltip: the catalog shows a model as what it is.
    KINDS = {
        "base": "pulled from the playground's list of models, as published",
        "imported": "imported from a file or folder by an admin",
        "fine-tuned": "trained further from its parent by a fine-tune job",
        "distilled": "trained by a distillation job to imitate a teacher model",
        "quantized": "its parent's weights stored in fewer bits by a quantize job",
        "pretrained": "trained from random weights by a pretraining job",
        "remote": "served by another server through its OpenAI-compatible API: no weights here",
    }

    @property
    def kind(self) -> str:
        """base, imported, fine-tuned, distilled, quantized, pretrained or remote (see KINDS). A model a
        job made says which job kind made it in its lineage (meta.json); one without a job was pulled
        (base) when the catalog found it to be a pullable model under that name from that source, else
        imported; one with a RemoteEndpoint is remote."""
        if self.is_remote:
            return "remote"
        extra = self.extra
        if "job" not in extra:
            return "base" if self.meta.get("pulled") else "imported"
        job_kind = extra.get("kind")
        if job_kind == "quantize":
            return "quantized"
        if job_kind == "pretrain":
            return "pretrained"
        return "distilled" if self.method == "distill" else "fine-tuned"

    @property
    def is_remote(self) -> bool:
        """Served elsewhere (a RemoteEndpoint): it chats, but nothing here can read its weights."""
        return bool(self.meta.get("remote"))

    @property
    def kind_help(self) -> str:
        return self.KINDS[self.kind]

    @property
    def uses_gqa(self) -> bool:
        return bool(self.kv_heads and self.attention_heads and self.kv_heads < self.attention_heads)

    @property
    def uses_mqa(self) -> bool:
        """Multi-query attention: every query head shares one key/value head (the smallest KV cache)."""
        return bool(self.kv_heads == 1 and self.attention_heads and self.attention_heads > 1)

    @property
    def full_attention_layers(self) -> int | None:
        return self.layers - self.sliding_window_layers if self.layers is not None else None

    @property
    def extra(self) -> dict[str, object]:
        return dict(self.meta.get("extra") or {})


class RemoteEndpoint(models.Model):
    """Where a remote model is served: an OpenAI-compatible base URL, the server's own id for the model,
    and its API key. Only admins add one (catalog.services.add_remote), and the URL is checked against the
    REMOTE_MODEL_HOSTS allow-list (llmcore.remote.check_base_url) each time it is used.

    The key is kept here because every request needs it in clear: it is never rendered on a page, put in
    a log line or an error message, or sent anywhere but this base URL.
    """

    entry = models.OneToOneField(ModelEntry, on_delete=models.CASCADE, related_name="remote")
    base_url = models.CharField(max_length=500)
    remote_model = models.CharField(max_length=200)
    api_key = models.CharField(max_length=500, blank=True, default="")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    added = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.entry.name} -> {self.base_url} ({self.remote_model})"
