"""One turn on a remote model (catalog kind "remote"): the conversation's messages sent to its
OpenAI-compatible server, the answer streamed back as the engine's events (llmcore.remote.RemoteStream),
and saved like any answer by turns.finish_turn.

What needs the model's tokens here is refused with the reason rather than faked: continue, branch and
replay start an answer from given token ids; best-of-N, beams and speculative decoding run in the local
engine. The context check is the server's (it refuses a conversation too long for it, and the chat shows
its error); the prompt's token count arrives with the server's usage at the end.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from llmcore.remote import RemoteRequest, RemoteServer, RemoteStream
from playground.catalog.models import ModelEntry
from playground.catalog.services import RemoteRefused, server_for
from playground.chat.models import Message
from playground.chat.services.conversations import DEFAULT_SETTINGS, ChatError
from playground.chat.services.tree import engine_messages, history, message_tree
from playground.chat.services.turns import (
    acted_on,
    answered_user,
    branch_to,
    edited_branch,
    open_conversation,
    pending_answer,
)

REMOTE_ACTIONS = ("new", "regenerate", "edit")  # what needs only the conversation's text


@dataclass
class RemoteTurn:
    """A user message saved and an assistant message waiting for a remote server's answer (the
    consumer reads it as it reads a Turn)."""

    conversation_id: int
    user_message_id: int
    message_id: int
    prompt_tokens: int  # unknown until the server's usage arrives: 0
    max_new_tokens: int
    context_length: int | None
    request: RemoteRequest
    server: RemoteServer
    action: str = "new"
    source_id: int | None = None
    prefix_text: str = ""
    prefix_tokens: tuple[()] = ()

    def submit(self) -> RemoteStream:
        return RemoteStream(self.server, self.request)


def is_remote_model(name: str) -> bool:
    entry = ModelEntry.objects.filter(name=name).first()
    return entry is not None and entry.is_remote


def refused_settings(settings: dict[str, Any]) -> list[str]:
    """The sampler settings a remote server cannot be asked for, in words."""
    found = []
    if settings["best_of"] > 1:
        found.append(f"best of {settings['best_of']}")
    if settings["num_beams"] > 1:
        found.append(f"{settings['num_beams']} beams")
    if settings["speculative"] != "off":
        found.append("speculative decoding")
    return found


def response_format(settings: dict[str, Any]) -> dict[str, Any] | None:
    kind = settings["response_format"] or "text"
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = json.loads(settings["json_schema"])  # the form checked it is JSON
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    return None


def start_remote_turn(owner: Any, data: dict[str, Any]) -> RemoteTurn:
    """Validated send data (forms.SendForm) for a remote model -> the saved user message and a pending
    answer, with the request its server is sent."""
    action = data.get("action", "new")
    model_name = data["model"]
    if action not in REMOTE_ACTIONS:
        raise ChatError(
            f"{model_name} is a remote model: {action} starts an answer from its token ids, which only a "
            "model with its weights here has. Regenerate or edit instead."
        )
    settings = {key: data[key] for key in DEFAULT_SETTINGS}
    refused = refused_settings(settings)
    if refused:
        raise ChatError(
            f"{model_name} is a remote model: {', '.join(refused)} run in this server's engine only. "
            "Turn them off to chat with it."
        )
    entry = ModelEntry.objects.get(name=model_name)
    context = entry.context_length
    if context and settings["max_new_tokens"] >= context:  # the rest is the server's to check
        raise ChatError(
            f"{settings['max_new_tokens']} new tokens do not fit in {model_name}'s context of {context} "
            "tokens (as its server reports it). Lower max new tokens."
        )
    try:
        server = server_for(entry)
    except RemoteRefused as exc:
        raise ChatError(str(exc), status=exc.status) from None
    with transaction.atomic():
        conversation = open_conversation(owner, data, settings)
        user_message, user_parent_id, messages, source_id = remote_plan(conversation, data)
        conversation.save()
        if user_message is None:
            user_message = Message.objects.create(
                conversation=conversation,
                role=Message.Role.USER,
                content=data["content"],
                parent_id=user_parent_id,
                provenance={"action": "edit", "source": source_id} if action == "edit" else {},
            )
        seed = settings["seed"] if settings["seed"] is not None else secrets.randbelow(2**31)
        extra = {
            key: settings[key]
            for key, neutral in (("top_k", 0), ("min_p", 0.0), ("repetition_penalty", 1.0))
            if settings[key] != neutral
        }
        request = RemoteRequest(
            messages=messages,
            max_tokens=settings["max_new_tokens"],
            seed=seed,
            temperature=settings["temperature"],
            top_p=settings["top_p"],
            stop=tuple(settings["stop_sequences"]),
            response_format=response_format(settings),
            extra=extra,
        )
        provenance = {
            "model": model_name,
            "remote": {"host": server.host, "model": server.model},
            "seed": seed,
            "sampling": {
                key: settings[key] for key in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
            },
            "max_new_tokens": settings["max_new_tokens"],
            "max_new_tokens_requested": settings["max_new_tokens"],
            "stop_sequences": list(settings["stop_sequences"]),
            "best_of": 1,
            "num_beams": 1,
            "constraint": request.response_format,
            "system_prompt": conversation.system_prompt,
            **({"action": action, "source": source_id} if action != "new" else {}),
        }
        message = pending_answer(conversation, user_message, provenance)
    return RemoteTurn(
        conversation_id=conversation.pk,
        user_message_id=user_message.pk,
        message_id=message.pk,
        prompt_tokens=0,
        max_new_tokens=settings["max_new_tokens"],
        context_length=entry.context_length,
        request=request,
        server=server,
        action=action,
        source_id=source_id,
    )


def remote_plan(
    conversation: Any, data: dict[str, Any]
) -> tuple[Message | None, int | None, list[dict[str, str]], int | None]:
    """(the user message answered, or None to save data["content"] after message `parent`; that
    parent; the messages the server is sent; the message acted upon) for new, edit and regenerate, in
    the tree as turns.plan_branch places them."""
    action = data.get("action", "new")
    if action == "new":
        shown = history(conversation)
        return (
            None,
            shown[-1].pk if shown else None,
            engine_messages(conversation, data["content"], shown),
            None,
        )
    tree = message_tree(conversation)
    source = acted_on(conversation, data)
    if action == "edit":
        parent_id, before = edited_branch(conversation, tree, source)
        return None, parent_id, engine_messages(conversation, data["content"], before), source.pk
    user_id = answered_user(tree, source, action)
    messages = engine_messages(conversation, None, branch_to(conversation, tree, user_id))
    return conversation.messages.get(pk=user_id), None, messages, source.pk
