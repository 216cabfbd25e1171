"""The chat page: conversations in a sidebar, the messages, a composer and the sampler panel. Answers
stream over the WebSocket (consumers.py); these views render pages and the partials htmx asks for."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from playground.catalog.services import default_model_of
from playground.chat import services
from playground.chat.forms import SPECULATIVE_CHOICES
from playground.chat.models import Conversation
from playground.chat.views import library
from playground.core.http import Request
from playground.core.services import RESPONSE_FORMATS, SCHEMA_CHARS, sampler_rows
from playground.core.text import TextField

# Every setting the consumer accepts, with the one line that explains it: the sampler's own first.
PARAMETERS: list[dict[str, Any]] = [
    *sampler_rows(),
    {"name": "seed", "label": "Seed", "min": 0, "max": 2**31 - 1, "step": 1,
     "hint": "The random seed: the same seed and settings repeat an answer. Empty = a fresh one each time."},
    {"name": "max_new_tokens", "label": "Max new tokens", "min": 1, "max": settings.CHAT_MAX_NEW_TOKENS,
     "step": 1, "hint": "The answer stops after this many tokens (reason: length)."},
    {"name": "best_of", "label": "Best of N", "min": 1, "max": 8, "step": 1,
     "hint": "Generate N answers, keep the best mean log-probability one, show the others (1 = off)."},
    {"name": "num_beams", "label": "Beams", "min": 1, "max": 8, "step": 1,
     "hint": "Beam search: follow the B likeliest partial answers, deterministic, no sampling (1 = off)."},
    {"name": "speculative_tokens", "label": "Proposed tokens", "min": 1, "max": 16, "step": 1,
     "hint": "Speculative decoding: how many tokens the proposer guesses before the model checks them."},
]  # fmt: skip
PRESETS = [
    ("Deterministic", "Temperature 0: the same answer every time.",
     {"temperature": 0, "top_k": 0, "top_p": 1, "min_p": 0}),
    ("Balanced", "Temperature 0.7, top-p 0.9.", {"temperature": 0.7, "top_k": 0, "top_p": 0.9, "min_p": 0}),
    ("Creative", "Temperature 1.1, top-p 0.95, min-p 0.05.",
     {"temperature": 1.1, "top_k": 0, "top_p": 0.95, "min_p": 0.05}),
]  # fmt: skip


class RenameForm(forms.Form):
    title = TextField(what="The title", max_length=200, error_messages={"required": "Give the chat a title."})


@require_GET
def index(request: Request) -> HttpResponse:
    # ?prompt=builtin:<key> or ?prompt=<id>: a new chat with a library template filled in (views/library.py)
    prefill = library.prompt_prefill(request)
    return render(request, "chat/page.html", {**page_context(request, None), **prefill})


@require_GET
def conversation(request: Request, conversation_id: int) -> HttpResponse:
    return render(request, "chat/page.html", page_context(request, owned(request, conversation_id)))


@require_GET
def search(request: Request) -> HttpResponse:
    if not request.htmx:  # a plain GET (no JavaScript) gets the whole page, filtered
        return render(request, "chat/page.html", page_context(request, None))
    return render(request, "chat/page.html#conversation-list", sidebar_context(request))


@require_POST
def rename(request: Request, conversation_id: int) -> HttpResponse:
    owned(request, conversation_id)
    form = RenameForm(request.POST)
    if form.is_valid():
        services.rename_conversation(request.user, conversation_id, form.cleaned_data["title"])
    if not request.htmx:
        return redirect("chat:conversation", conversation_id)
    errors = {conversation_id: str(form.errors["title"][0])} if form.errors else {}
    return render(
        request, "chat/page.html#conversation-list", sidebar_context(request, conversation_id, errors)
    )


@require_POST
def delete(request: Request, conversation_id: int) -> HttpResponse:
    owned(request, conversation_id)
    services.delete_conversation(request.user, conversation_id)
    if not request.htmx:
        return redirect("chat:index")
    if open_conversation_id(request) == conversation_id:  # the open chat is gone: start a new one
        return HttpResponseClientRedirect(reverse("chat:index"))
    return render(request, "chat/page.html#conversation-list", sidebar_context(request))


@require_GET
def message(request: Request, message_id: int) -> HttpResponse:
    """One saved message, as the page shows it: the streamed bubble is swapped for this."""
    try:
        found = services.get_message(request.user, message_id)
    except services.ChatError as exc:
        raise Http404(str(exc)) from None
    return render(request, "chat/conversation.html#message", {"message": services.with_versions(found)})


@require_GET
def messages(request: Request, conversation_id: int) -> HttpResponse:
    """The branch shown, as the page's message list (htmx swaps it in after an answer or a switch)."""
    found = owned(request, conversation_id)
    return render(request, "chat/conversation.html", {"messages_list": services.history(found)})


@require_POST
def show_version(request: Request, message_id: int) -> HttpResponse:
    """‹ › on a message: show the branch through this version of it."""
    return after_branch_change(request, services.show_version, message_id)


@require_POST
def delete_message(request: Request, message_id: int) -> HttpResponse:
    """Delete a message and everything after it in its branches; a sibling's branch (or the parent's)
    is shown instead."""
    return after_branch_change(request, services.delete_message, message_id)


def after_branch_change(request: Request, change: Any, message_id: int) -> HttpResponse:
    try:
        conversation = change(request.user, message_id)
    except services.ChatError as exc:  # someone else's message: not found, not forbidden
        raise Http404(str(exc)) from None
    if not request.htmx:
        return redirect("chat:conversation", conversation.pk)
    return render(request, "chat/conversation.html", {"messages_list": services.history(conversation)})


@require_GET
def export(request: Request, conversation_id: int, fmt: str) -> HttpResponse:
    """Download a conversation as JSON (with every answer's provenance) or as Markdown."""
    if fmt not in ("json", "md"):
        raise Http404("Export as .json or .md.")
    found = owned(request, conversation_id)
    slug = slugify(found.title)[:60] or "chat"
    if fmt == "json":
        body = json.dumps(services.export_json(found), indent=2, ensure_ascii=False)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
    else:
        response = HttpResponse(services.export_markdown(found), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slug}-{found.pk}.{fmt}"'
    return response


# --- helpers --------------------------------------------------------------------------------------
def owned(request: Request, conversation_id: int) -> Conversation:
    try:
        return services.get_conversation(request.user, conversation_id)
    except services.ChatError as exc:  # someone else's conversation: not found, not forbidden
        raise Http404(str(exc)) from None


def open_conversation_id(request: Request) -> int | None:
    """The conversation open in the page that sent this htmx request (its HX-Current-URL), if any."""
    path = request.htmx.current_url_abs_path if request.htmx else None
    try:
        match = resolve((path or "").split("?")[0])
    except Resolver404:
        return None
    return match.kwargs["conversation_id"] if match.view_name == "chat:conversation" else None


def sidebar_context(
    request: Request, current_id: int | None = None, errors: dict[int, str] | None = None
) -> dict[str, Any]:
    query = request.GET.get("q", "").strip()[:100]
    return {
        "conversations": services.search_conversations(request.user, query),
        "q": query,
        "current_id": current_id if current_id is not None else open_conversation_id(request),
        "rename_errors": errors or {},
    }


def page_context(request: Request, current: Conversation | None) -> dict[str, Any]:
    lengths = services.context_lengths(request.user)
    remote = services.remote_hosts(request.user)
    saved = {**services.DEFAULT_SETTINGS, **(current.sampler_settings if current else {})}
    names = list(lengths)
    asked = request.GET.get("model")  # a link that opens a new chat on a model (a job's output, say)
    if current and current.model_name in names:
        model = current.model_name
    else:
        model = asked if asked in names else (default_model_of(names) or "")
    parameters = [{**p, "value": saved.get(p["name"])} for p in PARAMETERS]
    return {
        **sidebar_context(request, current.pk if current else None),
        "conversation": current,
        "messages_list": services.history(current) if current else [],
        "model_choices": [
            {"name": n, "context_length": c, "remote": remote.get(n)} for n, c in lengths.items()
        ],
        "model": model,
        "system_prompt": current.system_prompt if current else "",
        "parameters": parameters,
        "stop_sequences": "\n".join(saved.get("stop_sequences") or []),
        "speculative_choices": SPECULATIVE_CHOICES,
        "speculative": saved.get("speculative") or "off",
        "draft_choices": services.draft_choices(request.user),
        "draft_model": saved.get("draft_model") or "",
        "response_formats": RESPONSE_FORMATS,
        "response_format": saved.get("response_format") or "text",
        "json_schema": saved.get("json_schema") or "",
        "presets": [{"label": a, "hint": b, "values": json.dumps(v)} for a, b, v in PRESETS],
        **library.presets_context(request.user),
        "limits": {
            "prompt_chars": settings.CHAT_MAX_PROMPT_CHARS,
            "system_chars": settings.CHAT_MAX_SYSTEM_CHARS,
            "new_tokens": settings.CHAT_MAX_NEW_TOKENS,
            "frame_bytes": settings.CHAT_MAX_FRAME_BYTES,
            "schema_chars": SCHEMA_CHARS,
        },
        "used_tokens": used_tokens(services.history(current)) if current else 0,
    }


def used_tokens(messages: list[Any]) -> int:
    """Tokens the conversation used at its last answer (prompt + generated), for the context bar."""
    for m in reversed(messages):
        stats = (m.provenance or {}).get("stats") or {}
        if stats.get("prompt_tokens"):
            return int(stats["prompt_tokens"]) + int(stats.get("generated_tokens") or 0)
    return 0
