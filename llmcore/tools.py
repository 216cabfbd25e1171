"""Tool calls: the tools a request offers, how the model hears of them, the grammar its calls follow
while decoding, and the calls read back out of the answer.

One format for every model. A call is a block

    <tool_call>
    {"name": "<one of the tools>", "arguments": {<that tool's parameters>}}
    </tool_call>

and several calls are such blocks, a newline between them: the format Qwen and Hermes models are
trained on, so a model that knows tools writes it by habit. A model whose chat template takes `tools`
hears of them through its template (`encode_tool_chat`); any other (the default model's template has no
tools) gets `TOOLS_PROMPT` as a system message, which states the format and lists the tools as JSON.

`tool_choice` (as OpenAI's API has it): "required": the answer is one call or more; a named function
({"type": "function", "function": {"name": N}}): calls of N only; "auto": text or calls, where text may
not start with "<" (so an answer that begins a call must finish it); "none": the tools are not offered.
With `parallel_tool_calls` false the answer holds one call at most. The grammar is llmcore.grammar's
Lark form with the calls' JSON schemas inline, so every call's arguments validate against their tool's
parameters (what the library can enforce; `strict` on a tool refuses a schema it cannot).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmcore.grammar import (
    Constraint,
    ConstraintKind,
    GrammarError,
    json_grammar_options,
    json_schema,
    lark_constraint,
)

TOOL_CHOICES = ("none", "auto", "required")
MAX_TOOLS = 64
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
OPEN, CLOSE = "<tool_call>", "</tool_call>"
CALL_BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*" + re.escape(CLOSE), re.DOTALL)
TOOLS_PROMPT = (
    "You can call tools. To call one, answer with only this, the arguments following the tool's "
    "parameters:\n"
    + OPEN
    + '\n{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}\n'
    + CLOSE
    + "\nTo call several, write one such block per call. The tools:\n{tools}"
)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool = False  # refuse a parameters schema with a keyword that cannot be enforced

    def as_json(self) -> dict[str, Any]:
        """As OpenAI's API and Hugging Face chat templates take a tool."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


def parse_tools(tools: Any) -> list[Tool]:
    """OpenAI's `tools` list ([{"type": "function", "function": {name, description, parameters,
    strict}}]) as Tools, refused with the reason (naming the tool) when one is malformed or its
    parameters cannot be enforced."""
    if not isinstance(tools, list) or not tools:
        raise GrammarError("tools must be a non-empty list of functions.")
    if len(tools) > MAX_TOOLS:
        raise GrammarError(f"At most {MAX_TOOLS} tools.")
    found: list[Tool] = []
    for i, entry in enumerate(tools):
        function = entry.get("function") if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or entry.get("type", "function") != "function"
            or not isinstance(function, dict)
        ):
            raise GrammarError(f'tools[{i}] must be {{"type": "function", "function": {{...}}}}.')
        name = function.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise GrammarError(f"tools[{i}]: a function name is 1 to 64 letters, digits, _ or -.")
        if any(t.name == name for t in found):
            raise GrammarError(f"Two tools are named {name}.")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        strict = function.get("strict") is True
        try:
            json_schema(parameters, strict=strict)  # refused here, naming the tool
        except GrammarError as exc:
            raise GrammarError(f"The parameters of tool {name}: {exc}") from None
        description = function.get("description") or ""
        found.append(Tool(name, str(description), parameters, strict))
    return found


def chosen_tools(tools: Sequence[Tool], tool_choice: Any) -> tuple[list[Tool], bool]:
    """The tools the answer may call and whether it must call one, for OpenAI's `tool_choice`."""
    if tool_choice is None or tool_choice == "auto":
        return list(tools), False
    if tool_choice == "required":
        return list(tools), True
    if tool_choice == "none":
        return [], False
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise GrammarError(
            'tool_choice is "none", "auto", "required" or {"type": "function", "function": {"name": ...}}.'
        )
    named = [t for t in tools if t.name == name]
    if not named:
        raise GrammarError(f"tool_choice names {name}, which is not among the tools.")
    return named, True


def tool_constraint(
    tools: Sequence[Tool], tool_choice: Any = "auto", parallel: bool = True, marker_token: bool = False
) -> Constraint | None:
    """The grammar of an answer that may (or, required, must) call `tools`; None for tool_choice "none".
    marker_token: the tokenizer has <tool_call> and </tool_call> as special tokens (Qwen's do), which
    the grammar then names as tokens rather than as text."""
    callable_tools, required = chosen_tools(tools, tool_choice)
    if not callable_tools:
        return None
    calls = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in callable_tools
        ],
        "x-guidance": json_grammar_options(strict=all(t.strict for t in callable_tools)),
    }
    open_, close = (OPEN, CLOSE) if marker_token else (json.dumps(OPEN), json.dumps(CLOSE))
    rules = [
        "start: calls" if required else "start: TEXT | calls",
        'calls: call ("\\n" call)* "\\n"?' if parallel else 'calls: call "\\n"?',
        f'call: {open_} "\\n" body "\\n" {close}',
        f"body: %json {json.dumps(calls)}",
    ]
    if not required:  # an answer in words; one that starts with "<" is a call
        rules.append("TEXT: /[^<](?s:.*)/")
    schema = {"tools": [t.name for t in callable_tools], "required": required, "parallel": parallel}
    return lark_constraint(ConstraintKind.TOOL_CALLS, "\n".join(rules), schema, what="The tools' grammar")


def tools_prompt(tools: Sequence[Tool]) -> str:
    """The system prompt that offers `tools` to a model whose chat template does not take them."""
    listed = json.dumps([t.as_json()["function"] for t in tools], indent=1, ensure_ascii=False)
    return TOOLS_PROMPT.format(tools=listed)


def template_takes_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a `tools` list (Qwen, Llama 3.1, Hermes... do)."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def with_tools_prompt(messages: Sequence[dict[str, str]], tools: Sequence[Tool]) -> list[dict[str, str]]:
    """The conversation with the tools prompt in its system message (the first, made if missing)."""
    prompt = tools_prompt(tools)
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{prompt}" if out[0].get("content") else prompt
    else:
        out.insert(0, {"role": "system", "content": prompt})
    return out


def calls_text(calls: Sequence[ToolCall]) -> str:
    """Calls written in the format above: how an earlier assistant turn that called tools goes back
    into the conversation (a client sends it as `tool_calls`), so the model sees its own format."""
    return "\n".join(
        f"{OPEN}\n{json.dumps({'name': c.name, 'arguments': c.arguments}, ensure_ascii=False)}\n{CLOSE}"
        for c in calls
    )


def parse_tool_calls(text: str) -> list[ToolCall]:
    """The calls in an answer written in the format above (none when it is text)."""
    found = []
    for block in CALL_BLOCK.findall(text):
        try:
            call = json.loads(block)
        except ValueError:
            continue  # a call cut by max_tokens
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            arguments = call.get("arguments")
            found.append(ToolCall(call["name"], arguments if isinstance(arguments, dict) else {}))
    return found


def plain_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """A conversation with tool turns, for a template that knows no tools: an assistant turn's calls
    (`tool_calls`, as Hugging Face templates take them: [{"function": {"name", "arguments": {...}}}])
    written as text in the format above, a tool's result (role "tool") as a user turn in
    <tool_response> tags, as Qwen's and Hermes' templates write it."""
    out = []
    for message in messages:
        content = str(message.get("content") or "")
        if message.get("role") == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"})
            continue
        calls = [
            ToolCall(c["function"]["name"], c["function"]["arguments"])
            for c in message.get("tool_calls") or ()
        ]
        text = "\n".join(part for part in (content, calls_text(calls)) if part)
        out.append({"role": str(message["role"]), "content": text})
    return out


def encode_tool_chat(loaded: Any, messages: Sequence[dict[str, Any]], tools: Sequence[Tool]) -> list[int]:
    """Token ids of a conversation that offers `tools` (or holds tool turns) to a loaded model
    (llmcore.loading.LoadedModel): through its chat template where that takes tools, else in plain
    turns with the tools prompt as system message."""
    if template_takes_tools(loaded.tokenizer):
        return list(loaded.encode_chat(messages, tools=[t.as_json() for t in tools] or None))
    plain = plain_messages(messages)
    return list(loaded.encode_chat(with_tools_prompt(plain, tools) if tools else plain))
