"""Conversations and their messages, always scoped to their owner; the chat's defaults."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from playground.chat.models import Conversation, Message
from playground.core.services import PlaygroundError

# What a conversation starts with; every key is validated by forms.SendForm.
DEFAULT_SETTINGS: dict[str, Any] = {
    "temperature": 0.7,
    "top_k": 0,
    "top_p": 1.0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "seed": None,  # None: a fresh seed per answer, recorded in its provenance
    "max_new_tokens": 512,
    "stop_sequences": [],
    "best_of": 1,  # > 1: generate N candidates, keep the best mean log-probability (the others are saved)
    "num_beams": 1,  # > 1: deterministic beam search
    # Speculative decoding: "off", "prompt_lookup", "draft" (with draft_model) or "auto"
    "speculative": "off",
    "draft_model": "",
    "speculative_tokens": 4,  # tokens proposed per verification
    # Structured output: "text", "json_object" or "json_schema" (with json_schema, the schema's JSON text)
    "response_format": "text",
    "json_schema": "",
}
SAMPLER_KEYS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")
# What a saved preset holds: the panel's sampler settings, not the output format (that is the task's).
PRESET_KEYS = tuple(k for k in DEFAULT_SETTINGS if k not in ("response_format", "json_schema"))
TITLE_CHARS = 60


class ChatError(PlaygroundError, ValueError):
    """Something the user can fix (unknown conversation, prompt too long...); the message is for them."""


# --- conversations --------------------------------------------------------------------------------
def conversations_of(owner) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=owner)


def get_conversation(owner, conversation_id: int) -> Conversation:
    conversation = conversations_of(owner).filter(pk=conversation_id).first()
    if conversation is None:  # someone else's conversation reads exactly like a missing one
        raise ChatError(f"No conversation {conversation_id}.")
    return conversation


def create_conversation(
    owner,
    model_name: str,
    *,
    title: str = "",
    system_prompt: str = "",
    sampler_settings: dict[str, Any] | None = None,
) -> Conversation:
    return Conversation.objects.create(
        owner=owner,
        title=title_from(title) or "New chat",
        model_name=model_name,
        system_prompt=system_prompt,
        sampler_settings={**DEFAULT_SETTINGS, **(sampler_settings or {})},
    )


def rename_conversation(owner, conversation_id: int, title: str) -> Conversation:
    conversation = get_conversation(owner, conversation_id)
    conversation.title = title_from(title) or conversation.title
    conversation.save(update_fields=["title", "updated"])
    return conversation


def delete_conversation(owner, conversation_id: int) -> None:
    get_conversation(owner, conversation_id).delete()


def search_conversations(owner, query: str = "") -> QuerySet[Conversation]:
    """The owner's conversations, newest first; a query matches titles and message text."""
    found = conversations_of(owner)
    query = query.strip()
    if query:
        matching = Message.objects.filter(content__icontains=query).values("conversation_id")
        found = found.filter(Q(title__icontains=query) | Q(pk__in=matching))
    return found


def get_message(owner, message_id: int) -> Message:
    """One message of the owner's conversations; someone else's reads like a missing one."""
    message = Message.objects.filter(pk=message_id, conversation__owner=owner).first()
    if message is None:
        raise ChatError(f"No message {message_id}.")
    return message


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
