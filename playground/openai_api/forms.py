"""What the OpenAI-compatible API accepts, checked before anything runs.

The sampler's bounds are the site's own (llmcore.sampling through core.forms), the stop sequences and the
bound on choices are the chat's, max tokens is bounded by CHAT_MAX_NEW_TOKENS. This site's extra sampler
fields (`top_k`, `min_p`, `repetition_penalty`) come as extra body fields, as vLLM takes them. A field
OpenAI defines that this site cannot honour is refused with a 400 naming it, never ignored, and so is any
field OpenAI does not define; only fields that change nothing here (`user`, `metadata`...) are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings

from playground.core.forms import MAX_CANDIDATES, StopSequencesField, sampler_form
from playground.core.services import json_type, text_problem
from playground.core.text import FloatField, TextField, loads_json
from playground.openai_api.errors import OpenAIError

MAX_SEED = 2**31 - 1  # the chat's bound: every seed the site records fits an int32
MAX_TOP_LOGPROBS = 20  # OpenAI's bound for chat; completions allow 5
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's bound on a list of inputs
# Fields OpenAI defines that change nothing on this site: accepted and ignored.
IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "safety_identifier"}
UNSUPPORTED = "unsupported_parameter"  # the code of a refusal of what OpenAI defines and this site lacks
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class FlagField(forms.Field):
    """A JSON true or false (or null: false); a string or a number is refused, not read as true (a
    BooleanField's checkbox widget would read "no" as true)."""

    def to_python(self, value: Any) -> bool:
        if value is None or isinstance(value, bool):
            return bool(value)
        raise forms.ValidationError(f"must be true or false, not {json_type(value)}.")


class ObjectField(forms.Field):
    """A JSON object (or null)."""

    def to_python(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError(f"must be an object, not {json_type(value)}.")
        return value


class GenerationForm(sampler_form(required=False)):  # type: ignore[misc]  # temperature, top_p, top_k, min_p, repetition_penalty
    """The fields chat completions and completions share."""

    model = TextField(what="model", max_length=200, strip=False)
    stream = FlagField(required=False)
    stream_options = ObjectField(required=False)
    max_tokens = forms.IntegerField(min_value=1, max_value=settings.CHAT_MAX_NEW_TOKENS, required=False)
    n = forms.IntegerField(min_value=1, max_value=MAX_CANDIDATES, required=False)
    seed = forms.IntegerField(min_value=0, max_value=MAX_SEED, required=False)
    stop = StopSequencesField(required=False)
    presence_penalty = FloatField(required=False)
    frequency_penalty = FloatField(required=False)
    logit_bias = ObjectField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("presence_penalty", "frequency_penalty"):
            if data.get(name):  # 0 and null are what clients send by default: they change nothing
                raise OpenAIError(
                    f"{name} is not supported: this site's sampler has repetition_penalty instead "
                    "(above 1 makes tokens already in the text less likely; send it as an extra field).",
                    param=name,
                    code=UNSUPPORTED,
                )
        if data.get("logit_bias"):
            raise OpenAIError("logit_bias is not supported.", param="logit_bias", code=UNSUPPORTED)
        options = data.get("stream_options") or {}
        if options and not data.get("stream"):
            raise OpenAIError("stream_options goes with stream: true.", param="stream_options")
        if set(options) - {"include_usage"} or not isinstance(options.get("include_usage", False), bool):
            raise OpenAIError(
                'stream_options takes only "include_usage": true or false.', param="stream_options"
            )
        return data


class ChatCompletionForm(GenerationForm):
    max_completion_tokens = forms.IntegerField(
        min_value=1, max_value=settings.CHAT_MAX_NEW_TOKENS, required=False
    )
    logprobs = FlagField(required=False)
    top_logprobs = forms.IntegerField(min_value=0, max_value=MAX_TOP_LOGPROBS, required=False)
    response_format = ObjectField(required=False)
    tool_choice = forms.Field(required=False)
    tools = forms.Field(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        both = data.get("max_tokens") is not None and data.get("max_completion_tokens") is not None
        if both and data["max_tokens"] != data["max_completion_tokens"]:
            raise OpenAIError("Send max_completion_tokens or max_tokens, not both.", param="max_tokens")
        if data.get("max_completion_tokens") is not None:
            data["max_tokens"] = data["max_completion_tokens"]
        if data.get("top_logprobs") and not data.get("logprobs"):
            raise OpenAIError("top_logprobs needs logprobs: true.", param="top_logprobs")
        return data


class CompletionForm(GenerationForm):
    max_tokens = forms.IntegerField(min_value=0, max_value=settings.CHAT_MAX_NEW_TOKENS, required=False)
    echo = FlagField(required=False)
    logprobs = forms.IntegerField(min_value=0, max_value=5, required=False)
    best_of = forms.IntegerField(min_value=1, max_value=MAX_CANDIDATES, required=False)
    suffix = forms.Field(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("suffix"):
            raise OpenAIError("suffix (fill in the middle) is not supported.", param="suffix")
        best_of, n = data.get("best_of") or 1, data.get("n") or 1
        if best_of > 1 and (n > 1 or data.get("stream")):
            raise OpenAIError(
                "best_of runs one answer here: send n 1 and no stream with it.", param="best_of"
            )
        if data.get("max_tokens") == 0 and not data.get("echo"):
            raise OpenAIError("max_tokens 0 generates nothing: it goes with echo (to score a prompt).")
        return data


class EmbeddingForm(forms.Form):
    model = TextField(what="model", max_length=200, strip=False)
    encoding_format = forms.ChoiceField(choices=[("float", "float"), ("base64", "base64")], required=False)
    dimensions = forms.IntegerField(min_value=1, required=False)


def validated(form_class: type[forms.Form], body: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """The form's cleaned data, or an OpenAIError naming the first field at fault. `known`: the body
    fields read elsewhere (messages, prompt, input...), so anything else unknown is refused."""
    unknown = sorted(set(body) - set(form_class.base_fields) - known - IGNORED)
    if unknown:
        raise OpenAIError(f"Unrecognized request argument supplied: {unknown[0]}.", param=unknown[0])
    form = form_class({k: v for k, v in body.items() if v is not None})
    if not form.is_valid():
        name, errors = next(iter(form.errors.items()))
        field = None if name == "__all__" else name
        text = "; ".join(str(e) for e in errors)
        raise OpenAIError(f"{field}: {text}" if field else text, param=field)
    return form.cleaned_data


# --- the bodies' text --------------------------------------------------------------------------------
def text_of(value: Any, where: str) -> str:
    """A string of valid text, named by its place in the body when it is not."""
    if not isinstance(value, str):
        raise OpenAIError(f"{where} must be a string, not {json_type(value)}.", param=where)
    problem = text_problem(value, where)
    if problem:
        raise OpenAIError(problem, param=where)
    return value


def message_content(value: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (joined); images and audio are refused."""
    if not isinstance(value, list):
        return text_of(value, where)
    parts = []
    for i, part in enumerate(value):
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else json_type(part)
            raise OpenAIError(f"{where}[{i}] is {kind!r}: these models read text parts only.", param=where)
        parts.append(text_of(part.get("text"), f"{where}[{i}].text"))
    return "".join(parts)


def chat_messages(value: Any) -> list[dict[str, Any]]:
    """The conversation as the chat template takes it: role and content, roles OpenAI's (developer is
    the system's newer name); an assistant turn's `tool_calls` as Hugging Face templates take them
    ([{"type": "function", "function": {"name", "arguments": {...}}}]) and a tool's result as role
    "tool" (llmcore.tools renders both for a template that knows no tools)."""
    if not isinstance(value, list) or not value:
        raise OpenAIError("messages must be a non-empty list of messages.", param="messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise OpenAIError(f"{where} must be an object with a role and content.", param=where)
        role = message.get("role")
        if not isinstance(role, str):
            raise OpenAIError(f"{where}.role must be one of {', '.join(ROLES)}.", param=where)
        if role == "function" or message.get("function_call"):
            raise OpenAIError(
                f"{where}: function_call is the old form of tool calls: send tool_calls and tool messages.",
                param=where,
                code=UNSUPPORTED,
            )
        if role == "tool":
            out.append(
                {"role": "tool", "content": message_content(message.get("content"), f"{where}.content")}
            )
            continue
        if role not in ROLES:
            raise OpenAIError(f"{where}.role must be one of {', '.join(ROLES)}, not {role!r}.", param=where)
        calls = message.get("tool_calls")
        if calls and role == "assistant":
            content = message.get("content")
            text = "" if content is None else message_content(content, f"{where}.content")
            out.append({"role": "assistant", "content": text, "tool_calls": tool_calls(calls, where)})
            continue
        if calls:
            raise OpenAIError(f"{where}: only an assistant turn has tool_calls.", param=where)
        out.append(
            {"role": ROLES[role], "content": message_content(message.get("content"), f"{where}.content")}
        )
    return out


def tool_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """An assistant turn's calls: OpenAI's [{"id", "type": "function", "function": {"name", "arguments":
    JSON text}}], with the arguments read as the JSON object they are."""
    if not isinstance(value, list):
        raise OpenAIError(f"{where}.tool_calls must be a list of calls.", param=where)
    out = []
    for j, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not isinstance(function, dict):
            raise OpenAIError(
                f'{where}.tool_calls[{j}] needs "function": {{"name", "arguments"}}.', param=where
            )
        try:
            arguments = loads_json(
                text_of(function.get("arguments") or "{}", f"{where}.tool_calls[{j}].arguments")
            )
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise OpenAIError(
                f"{where}.tool_calls[{j}].function.arguments must be a JSON object.", param=where
            )
        out.append({"type": "function", "function": {"name": name, "arguments": arguments}})
    return out


def one_or_many(value: Any, name: str, check: Callable[[Any, str], Any]) -> list[Any]:
    """`prompt` or `input`: one item or a non-empty list of them, each checked by `check`."""
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        if len(value) > MAX_EMBEDDING_INPUTS:
            raise OpenAIError(f"{name} holds {len(value)} items; at most {MAX_EMBEDDING_INPUTS}.", param=name)
        return [check(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return [check(value, name)]


def token_ids(value: Any, where: str) -> list[int]:
    """A list of token ids (their range is the model's vocabulary, checked once it is known)."""
    if not isinstance(value, list) or not value:
        raise OpenAIError(f"{where} must be text or a non-empty list of token ids.", param=where)
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
        raise OpenAIError(f"{where} must hold whole numbers >= 0 (token ids).", param=where)
    return value


def prompt_item(value: Any, where: str) -> str | list[int]:
    return text_of(value, where) if isinstance(value, str) else token_ids(value, where)


def embedding_item(value: Any, where: str) -> str:
    """Embeddings take text: token ids are refused, since a client's ids are rarely this model's own
    (LangChain sends tiktoken's unless told `check_embedding_ctx_length=False`)."""
    if isinstance(value, list):
        raise OpenAIError(
            f"{where}: send text, not token ids (they would be read as this model's own vocabulary).",
            param=where,
        )
    text = text_of(value, where)
    if not text:
        raise OpenAIError(f"{where} is empty.", param=where)
    return text
