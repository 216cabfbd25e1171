"""Conversations and their messages. Message text is stored raw, exactly as typed or generated: escaping
happens where it is shown (templates autoescape), never on the way in."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    """One chat; it keeps the model, system prompt and sampler settings it was last used with."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, default="New chat")
    model_name = models.CharField(max_length=64)
    system_prompt = models.TextField(blank=True, default="")
    # SamplingConfig fields plus seed, max_new_tokens and stop_sequences (see services.DEFAULT_SETTINGS).
    sampler_settings = models.JSONField(default=dict)
    # The last message of the branch shown (messages form a tree through Message.parent: regenerate,
    # continue, edit-and-rerun and branching from a token add siblings); null: the newest message.
    current = models.ForeignKey("Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated"]
        indexes = [models.Index(fields=["owner", "-updated"], name="chat_conv_owner_updated")]

    def __str__(self) -> str:
        return self.title


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STREAMING = "streaming"
        STOPPED = "stopped"  # Stop pressed or the page left mid-answer: the partial answer is kept
        ERROR = "error"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    # The message this one answers or follows (null: the first of the conversation). Siblings - messages
    # with the same parent and role - are the versions of one turn the page lets you switch between.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True, default="")
    # Assistant messages: model, weights_sha256, prompt_tokens, every sampler setting, seed and stats.
    provenance = models.JSONField(default=dict, blank=True)
    # Assistant messages: each generated token as [id, text, prob, [[alt_id, label, prob], ...]] (the
    # token inspector's data), and the exact prompt token ids it was generated from (for the attention of
    # any step, recomputed on demand).
    tokens = models.JSONField(default=list, blank=True)
    prompt_ids = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["conversation", "created"], name="chat_msg_conv_created")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


class PromptTemplate(models.Model):
    """A prompt a user saved in the library (the built-in ones live in prompt_library.py)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="prompt_templates"
    )
    name = models.CharField(max_length=100)
    category = models.CharField(max_length=40, blank=True, default="")
    description = models.CharField(max_length=300, blank=True, default="")
    system = models.TextField(blank=True, default="")
    # The user message, with {placeholders} the page asks for (e.g. {text}).
    template = models.TextField()
    # Few-shot examples: [{"input": str, "output": str}, ...], rendered before the new input.
    examples = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="chat_prompt_owner_name")]

    def __str__(self) -> str:
        return self.name


class SamplerPreset(models.Model):
    """Sampler settings a user saved under a name (next to the built-in presets of the chat page)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sampler_presets"
    )
    name = models.CharField(max_length=60)
    values = models.JSONField(default=dict)  # keys of services.PRESET_KEYS
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="chat_preset_owner_name")]

    def __str__(self) -> str:
        return self.name
