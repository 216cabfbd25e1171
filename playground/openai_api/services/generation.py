"""Chat completions and completions, planned: a body becomes the engine's requests (one per choice) with
every limit checked before anything runs, in two steps for the async views: `check_*` reads the catalog
(the database), `prepare` loads the model's engine and renders the prompts (seconds on a first use).

Prompts are the chat's: messages are rendered through the model's chat template with only its own
markers special (chat's render_prompt), and completion text is encoded so that typed special-token text
stays text, as everywhere on the site. The engine is the chat's too (chat's engine_for), so API requests
are batched with the chat's answers.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from jinja2 import TemplateError

from llmcore.encoding import encode_text
from llmcore.engine import Engine, GenerationRequest
from llmcore.grammar import Constraint, GrammarError, from_response_format
from llmcore.sampling import SamplingConfig
from llmcore.sampling import settings as sampler_settings
from llmcore.scoring import TokenScore, prompt_logprobs
from llmcore.tools import Tool, encode_tool_chat, parse_tools, tool_constraint
from playground.chat.services import engine_for, render_prompt
from playground.openai_api.errors import OpenAIError
from playground.openai_api.forms import (
    ChatCompletionForm,
    CompletionForm,
    chat_messages,
    one_or_many,
    prompt_item,
    validated,
)
from playground.openai_api.services.catalog import fingerprint, text_model

CHAT, TEXT = "chat.completion", "text_completion"
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions; chat's is what fits
MAX_SEED = 2**31
MAX_CHOICES = 64  # prompts x n of one completions request: each choice is a generation of its own


@dataclass(frozen=True)
class Checked:
    """A body that passed every check that needs no model loaded."""

    kind: str  # CHAT or TEXT
    data: dict[str, Any]  # the form's cleaned data
    model: str
    fingerprint: str
    messages: list[dict[str, Any]] = field(default_factory=list)  # chat
    prompts: list[str | list[int]] = field(default_factory=list)  # completions
    output: Output | None = None  # chat: structured output (response_format, tools)


@dataclass(frozen=True)
class Output:
    """What a chat answer must be: the grammar it is decoded under (llmcore.grammar), and the tools the
    prompt offers (their calls come back as `tool_calls`)."""

    constraint: Constraint | None = None
    tools: list[Tool] = field(default_factory=list)


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    text: str  # completions: the prompt as text (what echo returns); chat: ""
    scores: list[TokenScore | None] | None = None  # echo with logprobs: each prompt token's


@dataclass(frozen=True)
class Choice:
    index: int
    prompt: int  # which of Generation.prompts it answers
    request: GenerationRequest | None  # None: max_tokens 0 (echo scores the prompt, nothing is generated)


@dataclass
class Generation:
    kind: str
    model: str
    fingerprint: str
    engine: Engine
    prompts: list[Prompt]
    choices: list[Choice]
    stream: bool
    include_usage: bool
    logprobs: int | None  # alternatives listed per token; None: no logprobs asked for
    echo: bool = False
    tools: bool = False  # tools were offered: an answer that calls them comes back as tool_calls
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = self.id or f"{'chatcmpl' if self.kind == CHAT else 'cmpl'}-{secrets.token_hex(12)}"

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p.ids) for p in self.prompts)


# --- step 1: the body, the catalog ------------------------------------------------------------------
def check_chat(user: Any, body: dict[str, Any]) -> Checked:
    data = validated(ChatCompletionForm, body, known={"messages"})
    messages = chat_messages(body.get("messages"))
    output = output_of(data, body.get("parallel_tool_calls"))
    entry = text_model(user, data["model"])
    return Checked(CHAT, data, entry.name, fingerprint(entry), messages=messages, output=output)


def check_completion(user: Any, body: dict[str, Any]) -> Checked:
    data = validated(CompletionForm, body, known={"prompt"})
    if body.get("prompt") is None:
        raise OpenAIError("prompt is required: text, a list of texts or token ids.", param="prompt")
    prompts = one_or_many(body["prompt"], "prompt", prompt_item)
    n = data.get("n") or 1
    if len(prompts) * n > MAX_CHOICES:
        raise OpenAIError(
            f"{len(prompts)} prompts with n {n} make over {MAX_CHOICES} choices: send fewer.",
            param="prompt",
        )
    entry = text_model(user, data["model"])
    return Checked(TEXT, data, entry.name, fingerprint(entry), prompts=prompts)


def output_of(data: dict[str, Any], parallel: Any) -> Output:
    """Structured output: `response_format` (json_object, json_schema with `strict`) and `tools` with
    `tool_choice` and `parallel_tool_calls` become the grammar the answer is decoded under (llmcore.grammar
    and llmcore.tools, which refuse a schema they cannot enforce with the reason)."""
    tools, choice = data.get("tools"), data.get("tool_choice")
    if choice is not None and not tools:
        raise OpenAIError("tool_choice needs tools: the functions it may call.", param="tool_choice")
    if parallel is not None and not isinstance(parallel, bool):
        raise OpenAIError("parallel_tool_calls must be true or false.", param="parallel_tool_calls")
    try:
        constraint = from_response_format(data.get("response_format"))
    except GrammarError as exc:
        raise OpenAIError(str(exc), param="response_format") from None
    if not tools:
        return Output(constraint)
    if constraint is not None and choice != "none":
        raise OpenAIError(
            "Send response_format or tools, not both: an answer here is JSON of one schema or tool calls "
            '(or tool_choice "none").',
            param="response_format",
        )
    try:
        offered = parse_tools(tools)
        calls = tool_constraint(offered, choice or "auto", parallel is not False)
    except GrammarError as exc:
        raise OpenAIError(str(exc), param="tool_choice" if "tool_choice" in str(exc) else "tools") from None
    return Output(calls or constraint, offered if calls else [])


# --- step 2: the engine, the prompts, the limits -------------------------------------------------------
def prepare(checked: Checked) -> Generation:
    """The engine's requests, one per choice; loads the model on first use. Every limit is refused with a
    400 here (the context length, max tokens), never cut by the engine."""
    data = checked.data
    engine = engine_for(checked.model)
    if checked.kind == CHAT:
        if not engine.loaded.has_chat_template:
            raise OpenAIError(
                f"{checked.model} has no chat template: use POST /v1/completions with a prompt.",
                param="model",
            )
        prompts = [Prompt(chat_prompt(engine, checked), "")]
        logprobs = (data.get("top_logprobs") or 0) if data.get("logprobs") else None
    else:
        prompts = [completion_prompt(engine, p, f"prompt[{i}]") for i, p in enumerate(checked.prompts)]
        logprobs = data.get("logprobs")
    default = COMPLETION_DEFAULT_MAX_TOKENS if checked.kind == TEXT else settings.CHAT_MAX_NEW_TOKENS
    limits = [new_tokens(engine, checked, len(p.ids), data.get("max_tokens"), default) for p in prompts]
    if data.get("echo") and logprobs is not None:
        prompts = [score_prompt(engine, p, logprobs) for p in prompts]
    sampling = SamplingConfig(**{k: data[k] for k in sampler_settings() if data.get(k) is not None})
    n, seed = data.get("n") or 1, data.get("seed")
    choices: list[Choice] = []
    for p, (prompt, max_new) in enumerate(zip(prompts, limits, strict=True)):
        for j in range(n):
            request = None
            if max_new:
                request = GenerationRequest(
                    prompt_ids=prompt.ids,
                    sampling=sampling,
                    seed=None if seed is None else (seed + j) % MAX_SEED,  # n choices differ, each repeatable
                    max_new_tokens=max_new,
                    stop_sequences=tuple(data.get("stop") or ()),
                    top_alternatives=max(1, logprobs) if logprobs is not None else 0,
                    best_of=data.get("best_of") or 1,
                    constraint=checked.output.constraint if checked.output else None,
                )
            choices.append(Choice(len(choices), p, request))
    return Generation(
        kind=checked.kind,
        model=checked.model,
        fingerprint=checked.fingerprint,
        engine=engine,
        prompts=prompts,
        choices=choices,
        stream=bool(data.get("stream")),
        include_usage=bool((data.get("stream_options") or {}).get("include_usage")),
        logprobs=logprobs,
        echo=bool(data.get("echo")),
        tools=bool(checked.output and checked.output.tools),
    )


def chat_prompt(engine: Engine, checked: Checked) -> list[int]:
    tools = checked.output.tools if checked.output else []
    turns = any(m["role"] == "tool" or m.get("tool_calls") for m in checked.messages)
    try:
        if tools or turns:  # the template's own tool format where it has one, else the plain prompt
            return encode_tool_chat(engine.loaded, checked.messages, tools)
        return render_prompt(engine, checked.messages)
    except TemplateError as exc:  # a template's raise_exception: "roles must alternate" and the like
        raise OpenAIError(
            f"{checked.model}'s chat template refuses these messages: {exc}", param="messages"
        ) from None


def completion_prompt(engine: Engine, prompt: str | list[int], where: str) -> Prompt:
    """Text encoded with typed special-token text kept as text; token ids checked against the vocabulary."""
    if isinstance(prompt, str):
        ids = encode_text(engine.tokenizer, prompt)
        if not ids:
            raise OpenAIError(f"{where} is empty: give the model something to continue.", param="prompt")
        return Prompt(ids, prompt)
    bad = next((i for i in prompt if i >= engine.vocab_size), None)
    if bad is not None:
        raise OpenAIError(
            f"{where} holds token id {bad}; {engine.loaded.name}'s vocabulary has ids 0 to "
            f"{engine.vocab_size - 1}.",
            param="prompt",
        )
    return Prompt(list(prompt), engine.tokenizer.decode(prompt, skip_special_tokens=False))


def score_prompt(engine: Engine, prompt: Prompt, top_n: int) -> Prompt:
    """echo with logprobs: each prompt token's log-probability, from one forward pass of the model."""
    scores = prompt_logprobs(engine.loaded, prompt.ids, top_n, max_tokens=settings.INSPECT_MAX_TOKENS)
    return dataclasses.replace(prompt, scores=scores)


def new_tokens(
    engine: Engine, checked: Checked, prompt_tokens: int, requested: int | None, default: int
) -> int:
    """max_tokens as asked, when prompt and answer fit the context; else a 400 that says by how much.
    Not asked: as many as fit, up to `default`."""
    context = engine.context_length
    param = "messages" if checked.kind == CHAT else "prompt"
    room = context - prompt_tokens
    if room < 1 and requested != 0:
        raise OpenAIError(
            f"This model's maximum context length is {context} tokens, and the prompt alone is "
            f"{prompt_tokens}. Shorten the prompt.",
            param=param,
            code="context_length_exceeded",
        )
    if requested is None:
        return min(default, room)
    if requested > room:
        raise OpenAIError(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, {requested} for the "
            "completion). Lower max_tokens or shorten the prompt.",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return requested
