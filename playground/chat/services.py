"""Chat services: conversations (owner-scoped), the prompt sent to the engine, one engine per loaded model,
and the provenance saved with every answer. The only chat module that imports llmcore."""

from __future__ import annotations

import secrets
import threading
from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from llmcore.engine import DoneEvent, Engine, GenerationRequest, GenerationStream, StatsEvent
from llmcore.sampling import SamplingConfig
from playground.catalog.services import sync_catalog
from playground.chat.models import Conversation, Message
from playground.core.services import model_cache, model_store

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
}
SAMPLER_KEYS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")
TITLE_CHARS = 60


class ChatError(ValueError):
    """Something the user can fix (unknown conversation, prompt too long...); the message is for them."""


# --- conversations --------------------------------------------------------------------------------
def conversations_of(owner) -> QuerySet[Conversation]:  # type: ignore[no-untyped-def]
    return Conversation.objects.filter(owner=owner)


def get_conversation(owner, conversation_id: int) -> Conversation:  # type: ignore[no-untyped-def]
    conversation = conversations_of(owner).filter(pk=conversation_id).first()
    if conversation is None:  # someone else's conversation reads exactly like a missing one
        raise ChatError(f"No conversation {conversation_id}.")
    return conversation


def create_conversation(  # type: ignore[no-untyped-def]
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


def rename_conversation(owner, conversation_id: int, title: str) -> Conversation:  # type: ignore[no-untyped-def]
    conversation = get_conversation(owner, conversation_id)
    conversation.title = title_from(title) or conversation.title
    conversation.save(update_fields=["title", "updated"])
    return conversation


def delete_conversation(owner, conversation_id: int) -> None:  # type: ignore[no-untyped-def]
    get_conversation(owner, conversation_id).delete()


def search_conversations(owner, query: str = "") -> QuerySet[Conversation]:  # type: ignore[no-untyped-def]
    """The owner's conversations, newest first; a query matches titles and message text."""
    found = conversations_of(owner)
    query = query.strip()
    if query:
        matching = Message.objects.filter(content__icontains=query).values("conversation_id")
        found = found.filter(Q(title__icontains=query) | Q(pk__in=matching))
    return found


def get_message(owner, message_id: int) -> Message:  # type: ignore[no-untyped-def]
    """One message of the owner's conversations; someone else's reads like a missing one."""
    message = Message.objects.filter(pk=message_id, conversation__owner=owner).first()
    if message is None:
        raise ChatError(f"No message {message_id}.")
    return message


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def history(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.all())


def export_json(conversation: Conversation) -> dict[str, Any]:
    """The whole conversation with each answer's provenance, for download or a script."""
    return {
        "title": conversation.title,
        "model": conversation.model_name,
        "system_prompt": conversation.system_prompt,
        "sampler_settings": conversation.sampler_settings,
        "created": conversation.created.isoformat(),
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "error": m.error or None,
                "created": m.created.isoformat(),
                "provenance": m.provenance or None,
            }
            for m in history(conversation)
        ],
    }


def export_markdown(conversation: Conversation) -> str:
    """The conversation as a readable Markdown document; message text is written as it was said."""
    lines = [f"# {conversation.title}", "", f"Model: `{conversation.model_name}`", ""]
    if conversation.system_prompt:
        lines += ["## System", "", conversation.system_prompt, ""]
    for m in history(conversation):
        heading = {"user": "You", "assistant": "Assistant", "system": "System"}.get(m.role, m.role)
        badge = "" if m.status == Message.Status.COMPLETE else f" ({m.status})"
        lines += [f"## {heading}{badge}", "", m.content, ""]
        stats = (m.provenance or {}).get("stats") or {}
        if m.role == Message.Role.ASSISTANT and m.provenance:
            seed = m.provenance.get("seed")
            lines += [
                f"*{m.provenance.get('model')}, seed {seed}, stop: {stats.get('stop_reason', '-')}*",
                "",
            ]
    return "\n".join(lines)


def engine_messages(conversation: Conversation, new_user_text: str | None = None) -> list[dict[str, str]]:
    """System prompt, then the user and assistant turns so far (a stopped answer counts as said), then
    the new user message: what the chat template renders."""
    messages = []
    if conversation.system_prompt:
        messages.append({"role": "system", "content": conversation.system_prompt})
    for message in history(conversation):
        if message.role == Message.Role.SYSTEM or (message.status == Message.Status.ERROR):
            continue
        if message.role == Message.Role.ASSISTANT and not message.content:
            continue
        messages.append({"role": message.role, "content": message.content})
    if new_user_text is not None:
        messages.append({"role": "user", "content": new_user_text})
    return messages


# --- models and engines ---------------------------------------------------------------------------
def model_choices() -> list[tuple[str, str]]:
    """Catalog models that generate text (encoders cannot chat)."""
    return [(e.name, e.name) for e in sync_catalog() if not e.is_encoder_only]


def context_lengths() -> dict[str, int | None]:
    """The catalog's context length of each text model: what the page shows before an answer starts
    (the engine's own figure, in the "started" frame, replaces it)."""
    return {e.name: e.context_length for e in sync_catalog() if not e.is_encoder_only}


def default_model(names: list[str]) -> str:
    """The model a new chat starts with: the default model when the catalog has it, else the first."""
    from llmcore.pulls import DEFAULT_MODEL

    return DEFAULT_MODEL if DEFAULT_MODEL in names else (names[0] if names else "")


def weights_sha256(model_name: str) -> str:
    return model_store().meta(model_name).sha256


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(model_name: str) -> Engine:
    """This process's engine for a model, loading the model through the shared cache.

    An engine holds its model; when the cache has evicted or reloaded a model, its old engine is closed
    (ending what still runs on it) so the evicted weights can be freed.
    """
    loaded = model_cache().get(model_name)
    with _engines_lock:
        live = {id(m) for m in model_cache().loaded()}
        for name, engine in list(_engines.items()):
            if id(engine.loaded) not in live or (name == model_name and engine.loaded is not loaded):
                del _engines[name]
                engine.close(timeout=0)
        engine = _engines.get(model_name)
        if engine is None:
            engine = _engines[model_name] = Engine(loaded)
        return engine


# --- one turn -------------------------------------------------------------------------------------
@dataclass
class Turn:
    """A user message saved and an assistant message waiting for the answer."""

    conversation_id: int
    user_message_id: int
    message_id: int
    prompt_tokens: int
    max_new_tokens: int
    context_length: int
    request: GenerationRequest
    engine: Engine

    def submit(self) -> GenerationStream:
        return self.engine.submit(self.request)


def start_turn(owner, data: dict[str, Any]) -> Turn:  # type: ignore[no-untyped-def]
    """Validated send data (forms.SendForm) -> the saved user message and a pending assistant message.

    The prompt is rendered here, through the model's chat template, so its exact token count is known
    (and checked against the context) before anything is generated.
    """
    model_name = data["model"]
    settings = {key: data[key] for key in DEFAULT_SETTINGS}
    engine = engine_for(model_name)
    if not engine.loaded.has_chat_template:
        raise ChatError(f"{model_name} has no chat template, so it cannot chat.")
    with transaction.atomic():
        if data.get("conversation"):
            conversation = get_conversation(owner, data["conversation"])
        else:
            conversation = create_conversation(owner, model_name, title=data["content"])
        conversation.model_name = model_name
        conversation.system_prompt = data.get("system") or ""
        conversation.sampler_settings = settings
        prompt_ids = render_prompt(engine, engine_messages(conversation, data["content"]))
        context = engine.context_length
        max_new = min(settings["max_new_tokens"], context - 1)
        if len(prompt_ids) > context - max_new:
            raise ChatError(
                f"The conversation is {len(prompt_ids)} tokens; with {max_new} new tokens it does not fit "
                f"in {model_name}'s context of {context} tokens. Lower max new tokens or start a new chat."
            )
        conversation.save()
        last = conversation.messages.order_by("-created", "-id").first()
        user_message = Message.objects.create(
            conversation=conversation, role=Message.Role.USER, content=data["content"], parent=last
        )
        seed = settings["seed"] if settings["seed"] is not None else secrets.randbelow(2**31)
        sampling = SamplingConfig(**{key: settings[key] for key in SAMPLER_KEYS})
        request = GenerationRequest(
            prompt_ids=prompt_ids,
            sampling=sampling,
            seed=seed,
            max_new_tokens=max_new,
            stop_sequences=tuple(settings["stop_sequences"]),
        )
        provenance = {
            "model": model_name,
            "weights_sha256": weights_sha256(model_name),
            "prompt_tokens": len(prompt_ids),
            "sampling": asdict(sampling),
            "seed": seed,
            "max_new_tokens": max_new,
            "max_new_tokens_requested": settings["max_new_tokens"],
            "stop_sequences": list(settings["stop_sequences"]),
            "system_prompt": conversation.system_prompt,
        }
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            parent=user_message,
            status=Message.Status.STREAMING,
            provenance=provenance,
            prompt_ids=prompt_ids,
        )
    return Turn(
        conversation_id=conversation.pk,
        user_message_id=user_message.pk,
        message_id=message.pk,
        prompt_tokens=len(prompt_ids),
        max_new_tokens=max_new,
        context_length=context,
        request=request,
        engine=engine,
    )


def render_prompt(engine: Engine, messages: list[dict[str, str]]) -> list[int]:
    """Exactly what the engine would render from `messages` (chat template, generation prompt)."""
    tokenizer = engine.tokenizer
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer.encode(rendered, add_special_tokens=False))


STATUS_FOR_REASON = {"cancelled": Message.Status.STOPPED, "error": Message.Status.ERROR}


def finish_turn(
    message_id: int,
    text: str,
    reason: str,
    stats: StatsEvent | None = None,
    error: str | None = None,
    tokens: list[list[Any]] | None = None,
) -> Message:
    """Save the answer (whole or partial) with its status, the generation's stats and its tokens."""
    message = Message.objects.select_related("conversation").get(pk=message_id)
    message.content = text
    message.tokens = tokens or []
    message.status = STATUS_FOR_REASON.get(reason, Message.Status.COMPLETE)
    message.error = error or ""
    provenance = dict(message.provenance)
    provenance["stats"] = {
        "stop_reason": reason,
        "prompt_tokens": stats.prompt_tokens if stats else provenance.get("prompt_tokens"),
        "generated_tokens": stats.generated_tokens if stats else None,
        "time_to_first_token_s": stats.time_to_first_token_s if stats else None,
        "tokens_per_s": stats.tokens_per_s if stats else None,
        "clamped": stats.clamped if stats else False,
    }
    message.provenance = provenance
    message.save(update_fields=["content", "status", "error", "provenance", "tokens"])
    message.conversation.save(update_fields=["updated"])
    return message


def finish_turn_from_done(
    message_id: int, done: DoneEvent, stats: StatsEvent | None, tokens: list[list[Any]] | None = None
) -> Message:
    return finish_turn(message_id, done.text, done.reason, stats, done.error, tokens)
