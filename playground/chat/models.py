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
    # The message this one answers or follows; kept for branching conversations later.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True, default="")
    # Assistant messages: model, weights_sha256, prompt_tokens, every sampler setting, seed and stats.
    provenance = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["conversation", "created"], name="chat_msg_conv_created")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"
