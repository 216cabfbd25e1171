"""The tokenizer lab: text -> normalization -> pre-tokens -> tokens -> IDs -> embeddings and positions,
side by side for several tokenizers; the chat template; training tokenizers; and a JSON API.

Every form posts to a real URL and works without JavaScript (the whole page comes back); htmx requests
get just the partial they swap in.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.core.api import ApiError, api_view, json_body, validated
from playground.core.http import Request
from playground.inspect.forms_tokenize import (
    CHAT_EXAMPLE,
    MAX_COMPARE,
    ApiTokenizeForm,
    ChatForm,
    LabForm,
    TrainForm,
    limits,
)
from playground.inspect.services import tokenize as services
from playground.inspect.tasks import train_tokenizer_task

PAGE = "inspect/tokenize.html"
DEFAULT_TEXT = (
    "Tokenizers turn text into numbers: “unbelievable”, naïve café, 12345.\n👋🏽 日本語\tand  two spaces."
)


def lab_for(form: LabForm, user: Any) -> tuple[services.Lab | None, str]:
    """The lab's steps for a valid form, or the message to show in their place."""
    if not form.is_valid():
        return None, str(next(iter(form.errors.values()))[0])
    try:
        data = form.cleaned_data
        return services.analyse(data["text"], data["models"], user, parse_special=data["parse_special"]), ""
    except (LookupError, services.TokenizeError) as exc:
        return None, str(exc).strip("'\"")


def chat_for(form: ChatForm) -> tuple[Any, str]:
    if not form.is_valid():
        return None, str(next(iter(form.errors.values()))[0])
    data = form.cleaned_data
    try:
        return services.chat(data["model"], data["messages"], data["generation_prompt"]), ""
    except services.TokenizeError as exc:
        return None, str(exc)


def trained_context(user: Any) -> dict[str, Any]:
    trained = services.trained_for(user)
    return {
        "trained": trained,
        "any_pending": any(not t.is_done for t in trained),
        "default_choice": services.default_choice(user),
    }


def render_page(request: Request, context: dict[str, Any], status: int = 200) -> HttpResponse:
    """The whole page; whichever part the request did not post shows its default example."""
    if "form" not in context:
        data = {"text": DEFAULT_TEXT, "models": request.GET.getlist("models")}
        context["form"] = LabForm(data, user=request.user)
        context["lab"], context["lab_error"] = lab_for(context["form"], request.user)
    if "chat_form" not in context:
        initial = {"model": services.default_model_name(request.user), **CHAT_EXAMPLE}
        context["chat_form"] = ChatForm(initial, user=request.user)
        context["chat"], context["chat_error"] = chat_for(context["chat_form"])
    context.setdefault("train_form", TrainForm())
    form = context["form"]
    context |= {
        "choices": services.tokenizer_choices(request.user),
        "selected": form.cleaned_data.get("models", []) if form.is_valid() else form["models"].value() or [],
        "limits": limits(),
        "max_compare": MAX_COMPARE,
        **trained_context(request.user),
    }
    return render(request, PAGE, context, status=status)


@require_http_methods(["GET", "POST"])
def page(request: Request) -> HttpResponse:
    if request.method == "POST":
        data: Any = request.POST
    else:  # GET takes ?text=&models= so a comparison can be linked to
        data = {
            "text": request.GET.get("text", DEFAULT_TEXT),
            "models": request.GET.getlist("models"),
            "parse_special": request.GET.get("parse_special"),
        }
    form = LabForm(data, user=request.user, browser=True)
    lab, error = lab_for(form, request.user)
    context = {"form": form, "lab": lab, "lab_error": error}
    if request.htmx and request.method == "POST":
        return render(request, f"{PAGE}#results", context)
    return render_page(request, context)


@require_POST
def chat(request: Request) -> HttpResponse:
    form = ChatForm(request.POST, user=request.user)
    rendering, error = chat_for(form)
    context = {"chat_form": form, "chat": rendering, "chat_error": error}
    if request.htmx:
        return render(request, f"{PAGE}#chat", context)
    return render_page(request, context)


@require_POST
def train(request: Request) -> HttpResponse:
    form = TrainForm(request.POST, request.FILES)
    row = None
    if form.is_valid():
        try:
            row = services.start_training(
                request.user, form.cleaned_data, limits()["inline_bytes"], train_tokenizer_task.delay
            )
        except services.TrainError as exc:
            form.add_error(None, str(exc))
    if row is not None and not request.htmx:
        messages.success(request, training_message(row))
        return redirect(reverse("inspect:tokenize") + "#train")
    context: dict[str, Any] = {"train_form": TrainForm() if row else form, "just_trained": row}
    if request.htmx:
        context |= {"limits": limits(), **trained_context(request.user)}
        return render(request, f"{PAGE}#train", context)
    return render_page(request, context, status=400)


def training_message(row: Any) -> str:
    if row.is_done:
        return f"Trained “{row.name}”: {row.actual_vocab_size} tokens in its vocabulary."
    return f"“{row.name}” is queued: a worker trains it, and this page shows when it is ready."


@require_GET
def trained(request: Request) -> HttpResponse:
    """The list of the person's tokenizers, polled while one of them is still training."""
    if not request.htmx:
        return redirect(reverse("inspect:tokenize") + "#train")
    return render(request, f"{PAGE}#trained", trained_context(request.user))


@require_POST
def delete(request: Request, pk: int) -> HttpResponse:
    deleted = services.delete_trained(request.user, pk)
    if request.htmx:
        return render(
            request, f"{PAGE}#trained", trained_context(request.user), status=200 if deleted else 404
        )
    if deleted:
        messages.success(request, "Tokenizer deleted.")
    return redirect(reverse("inspect:tokenize") + "#train")


@api_view
def api(request: Request) -> dict[str, Any]:
    if request.method != "POST":
        raise ApiError(
            'POST a JSON object: {"text": "...", "models": ["..."], "include": ["pipeline"]}.', 405
        )
    form_class = functools.partial(ApiTokenizeForm, user=request.user)
    data = validated(form_class, json_body(request))  # type: ignore[arg-type]
    include = set(data.get("include") or [])
    try:
        lab = services.analyse(
            data["text"],
            data["models"],
            request.user,
            pipelines="all" if "pipeline" in include else "none",
            embeddings="embeddings" in include,
            parse_special=data["parse_special"],
        )
    except (LookupError, services.TokenizeError) as exc:
        raise ApiError(str(exc).strip("'\"")) from None
    return services.lab_json(lab)
