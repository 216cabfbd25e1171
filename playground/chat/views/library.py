"""The prompt library (/chat/prompts/): the built-in templates of prompt_library.py and the ones each user
saves, "Use" to open the chat with one filled in, and the sampler presets users save from the chat panel.

Everything here is owner-scoped: another user's template or preset reads as missing (404). These are
plain ORM reads and writes of this app's own models, so they live here rather than in services.py (the
one chat module that talks to llmcore).
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.chat import prompt_library
from playground.chat.forms import MAX_EXAMPLES, ExampleFormSet, PresetForm, PromptTemplateForm
from playground.chat.models import PromptTemplate, SamplerPreset
from playground.core.http import Request

EXAMPLES_PREFIX = "examples"


# --- the library ----------------------------------------------------------------------------------
@require_GET
def library(request: Request) -> HttpResponse:
    own = PromptTemplate.objects.filter(owner=request.user)
    categories: dict[str, list[prompt_library.BuiltinPrompt]] = {}
    for prompt in prompt_library.BUILTINS:
        categories.setdefault(prompt.category, []).append(prompt)
    return render(
        request,
        "chat/library.html",
        {
            "own": [{"prompt": p, "placeholders": prompt_library.placeholders(p.template)} for p in own],
            "categories": categories,
        },
    )


@require_http_methods(["GET", "POST"])
def new(request: Request) -> HttpResponse:
    """A new template, blank or a copy of a built-in or an own one (?from=builtin:<key> or ?from=<id>)."""
    initial: dict[str, Any] = {}
    examples: list[dict[str, str]] = []
    source = request.GET.get("from", "")
    if source and request.method == "GET":
        found = find_prompt(request, source)
        initial = {
            field: getattr(found, field) for field in ("category", "description", "system", "template")
        }
        initial["name"] = f"{found.name} (my copy)"
        examples = list(found.examples)
    return editor(request, PromptTemplate(owner=request.user), initial, examples)


@require_http_methods(["GET", "POST"])
def edit(request: Request, template_id: int) -> HttpResponse:
    found = own_template(request, template_id)
    return editor(request, found, {}, list(found.examples))


@require_POST
def delete(request: Request, template_id: int) -> HttpResponse:
    found = own_template(request, template_id)
    found.delete()
    messages.success(request, f"Deleted the template “{found.name}”.")
    return redirect("chat:library")


def editor(
    request: Request, instance: PromptTemplate, initial: dict[str, Any], examples: list[dict[str, str]]
) -> HttpResponse:
    """The template form and its few-shot example rows (a formset: add and remove work without
    JavaScript; "Add an example" re-renders with one more row and saves nothing)."""
    form = PromptTemplateForm(initial=initial, instance=instance, owner=request.user)
    formset = ExampleFormSet(initial=examples, prefix=EXAMPLES_PREFIX)
    if request.method == "POST" and "add_example" in request.POST:
        form = PromptTemplateForm(initial=request.POST.dict(), instance=instance, owner=request.user)
        formset = ExampleFormSet(initial=posted_rows(request), prefix=EXAMPLES_PREFIX)
    elif request.method == "POST":
        form = PromptTemplateForm(request.POST, instance=instance, owner=request.user)
        formset = ExampleFormSet(request.POST, prefix=EXAMPLES_PREFIX)
        # `&`, not `and`: both forms validate, so every error shows at once.
        if form.is_valid() & formset.is_valid() and fits(form, formset) and saved(form, formset):
            messages.success(request, f"Saved the template “{form.instance.name}”.")
            return redirect(f"{reverse('chat:library')}#prompt-{form.instance.pk}")
    context = {"form": form, "formset": formset, "editing": instance.pk is not None,
               "max_examples": MAX_EXAMPLES, "limit": settings.CHAT_MAX_PROMPT_CHARS}  # fmt: skip
    return render(request, "chat/library_form.html", context)


def fits(form: PromptTemplateForm, formset: Any) -> bool:
    """The message the template becomes, examples included, must fit in one chat message."""
    message = prompt_library.compose_message(form.cleaned_data["template"], formset.examples())
    if len(message) <= settings.CHAT_MAX_PROMPT_CHARS:
        return True
    form.add_error(
        "template",
        f"With its examples the message is {len(message)} characters; a chat message holds at most "
        f"{settings.CHAT_MAX_PROMPT_CHARS}. Shorten the template or the examples.",
    )
    return False


def saved(form: PromptTemplateForm, formset: Any) -> bool:
    template = form.save(commit=False)
    template.owner = form.owner
    template.examples = formset.examples()
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:  # the same name saved meanwhile (another tab): the form says so
        form.add_error("name", "You already have a template with this name: pick another name.")
        return False
    return True


def posted_rows(request: Request) -> list[dict[str, str]]:
    """The example rows as posted (unvalidated, for re-rendering only), without the removed ones."""
    try:
        total = min(int(request.POST.get(f"{EXAMPLES_PREFIX}-TOTAL_FORMS", 0)), MAX_EXAMPLES)
    except ValueError:
        total = 0
    rows = []
    for i in range(max(total, 0)):
        key = f"{EXAMPLES_PREFIX}-{i}-"
        row = {"input": request.POST.get(key + "input", ""), "output": request.POST.get(key + "output", "")}
        if not request.POST.get(key + "DELETE") and (row["input"] or row["output"]):
            rows.append(row)
    return rows


# --- using a template in the chat -----------------------------------------------------------------
def find_prompt(request: Request, ref: str) -> Any:
    """A built-in ("builtin:<key>") or one of the user's own templates (its id); else 404."""
    if ref.startswith(prompt_library.BUILTIN_PREFIX):
        found = prompt_library.builtin(ref)
        if found is None:
            raise Http404(f"No built-in prompt “{ref[:60]}”")
        return found
    if not ref.isdigit():
        raise Http404("Name a prompt as builtin:<name> or by its number")
    return own_template(request, int(ref))


def prompt_prefill(request: Request) -> dict[str, Any]:
    """What the chat page shows for ?prompt=...: the composer filled with the template (few-shot
    examples rendered in, {placeholders} left to replace) and its system prompt, if it has one."""
    ref = request.GET.get("prompt", "").strip()
    if not ref:
        return {}
    found = find_prompt(request, ref)
    context: dict[str, Any] = {
        "composer_text": prompt_library.compose_message(found.template, found.examples),
        "prompt_used": {"name": found.name, "placeholders": prompt_library.placeholders(found.template)},
    }
    if found.system:
        context["system_prompt"] = found.system
    return context


def own_template(request: Request, template_id: int) -> PromptTemplate:
    found = PromptTemplate.objects.filter(owner=request.user, pk=template_id).first()
    if found is None:  # someone else's template reads exactly like a missing one
        raise Http404(f"No prompt template {template_id}")
    return found


# --- saved sampler presets ------------------------------------------------------------------------
@require_POST
def save_preset(request: Request) -> HttpResponse:
    """Save the chat panel's sampler settings under a name (validated like a "send" frame)."""
    form = PresetForm.from_post(request.POST, request.user)
    saved_name = None
    if form.is_valid():
        try:
            with transaction.atomic():
                preset = SamplerPreset.objects.create(
                    owner=request.user, name=form.cleaned_data["preset_name"], values=form.values()
                )
            saved_name = preset.name
        except IntegrityError:
            form.add_error("preset_name", "You already have a preset with this name: pick another name.")
    if not request.htmx:
        return redirect("chat:index")
    return render_presets(request, form=None if saved_name else form, saved_name=saved_name)


@require_POST
def delete_preset(request: Request, preset_id: int) -> HttpResponse:
    deleted, _ = SamplerPreset.objects.filter(owner=request.user, pk=preset_id).delete()
    if not deleted:
        raise Http404(f"No preset {preset_id}")
    if not request.htmx:
        return redirect("chat:index")
    return render_presets(request)


def render_presets(
    request: Request, form: PresetForm | None = None, saved_name: str | None = None
) -> HttpResponse:
    context = {**presets_context(request.user), "preset_form": form, "preset_saved": saved_name}
    # 200 with the errors in the partial: htmx swaps in only successful responses.
    return render(request, "chat/page.html#saved-presets", context)


def presets_context(owner: Any) -> dict[str, Any]:
    """The user's presets as the page's preset buttons: data-values in the form fields' own format
    (a seed of None is an empty field, stop sequences one per line), which chat.js copies in."""
    presets = []
    for preset in SamplerPreset.objects.filter(owner=owner):
        values = dict(preset.values)
        if "seed" in values:
            values["seed"] = "" if values["seed"] is None else values["seed"]
        if "stop_sequences" in values:
            values["stop_sequences"] = "\n".join(values["stop_sequences"] or [])
        summary = ", ".join(f"{k} {v!r}" if k == "stop_sequences" else f"{k} {v}" for k, v in values.items())
        presets.append(
            {"id": preset.pk, "name": preset.name, "values": json.dumps(values), "summary": summary}
        )
    return {"saved_presets": presets}
