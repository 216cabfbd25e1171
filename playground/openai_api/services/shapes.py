"""OpenAI's response objects, built from the engine's events: chat.completion (and its chunks),
text_completion, usage and log-probabilities.

Log-probabilities are those of the distribution each token was drawn from, after the sampler (the
token inspector's numbers; with temperature 0, the temperature-1 distribution, since greedy's own is all
on one token). `top_logprobs` are the likeliest tokens there, from the engine's alternatives; a token's
`bytes` are its vocabulary entry's, so a piece of a character is reported exactly ("bytes:\\xe2\\x80").
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any

from llmcore.engine import DoneEvent, FinishReason, StatsEvent, TokenEvent
from llmcore.tokenize import vocabulary_bytes
from llmcore.tools import parse_tool_calls
from playground.openai_api.services.generation import CHAT, Generation

FLOOR = -9999.0  # OpenAI's log-probability for a token the distribution gives (numerically) nothing


@dataclass
class ChoiceResult:
    """What one choice's stream delivered."""

    tokens: list[TokenEvent] = field(default_factory=list)
    stats: StatsEvent | None = None
    done: DoneEvent | None = None
    calls: list[dict[str, Any]] | None = None  # tool calls, once read out of the finished answer

    @property
    def text(self) -> str:
        return self.done.text if self.done else "".join(t.text for t in self.tokens)

    @property
    def completion_tokens(self) -> int:
        if self.done and len(self.done.candidates) > 1:  # best_of: every candidate was generated
            return sum(len(c.token_ids) for c in self.done.candidates)
        return self.stats.generated_tokens if self.stats else len(self.tokens)


def finish_reason(done: DoneEvent | None, calls: list[dict[str, Any]] | None = None) -> str:
    if calls:
        return "tool_calls"
    return "length" if done is not None and done.reason == FinishReason.LENGTH else "stop"


def calling(generation: Generation, result: ChoiceResult) -> bool:
    """Whether an answer is tool calls: with tools offered, one that begins with "<" (llmcore.tools: an
    answer in words may not), so its first character decides, and a stream knows it at once."""
    text = result.done.text if result.done else "".join(t.text for t in result.tokens)
    return generation.tools and text.startswith("<")


def tool_calls(generation: Generation, result: ChoiceResult) -> list[dict[str, Any]] | None:
    """A finished answer's calls of the offered tools, as OpenAI's `tool_calls` (None: it answered in
    words, or was cut before its calls were whole). Ids are made once per answer (see ChoiceResult)."""
    if not calling(generation, result) or result.done is None or result.done.reason != FinishReason.STOP:
        return None
    if result.calls is None:
        result.calls = [
            {
                "id": f"call_{secrets.token_hex(12)}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call in parse_tool_calls(result.text)
        ]
    return result.calls or None


def safe_log(prob: float) -> float:
    return math.log(prob) if prob > 0 else FLOOR


def token_text(generation: Generation, token_id: int) -> tuple[str, list[int]]:
    raw = vocabulary_bytes(generation.engine.tokenizer, token_id)
    try:
        return raw.decode("utf-8"), list(raw)
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw), list(raw)


def chosen_logprob(event: TokenEvent) -> float:
    """The token's log-probability in the same distribution as its alternatives (see the module)."""
    chosen = next((a for a in event.alternatives if a.id == event.id), None)
    return safe_log(chosen.prob) if chosen is not None else event.logprob


def usage(generation: Generation, results: list[ChoiceResult]) -> dict[str, int]:
    completion = sum(r.completion_tokens for r in results)
    prompt = generation.prompt_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def envelope(generation: Generation, chunk: bool) -> dict[str, Any]:
    kind = generation.kind + (".chunk" if chunk and generation.kind == CHAT else "")
    return {
        "id": generation.id,
        "object": kind,
        "created": generation.created,
        "model": generation.model,
        "system_fingerprint": generation.fingerprint,
    }


# --- chat ----------------------------------------------------------------------------------------
def chat_token_logprob(generation: Generation, event: TokenEvent) -> dict[str, Any]:
    text, raw = token_text(generation, event.id)
    top = []
    for alternative in event.alternatives[: generation.logprobs or 0]:
        alt_text, alt_raw = token_text(generation, alternative.id)
        top.append({"token": alt_text, "logprob": safe_log(alternative.prob), "bytes": alt_raw})
    return {"token": text, "logprob": chosen_logprob(event), "bytes": raw, "top_logprobs": top}


def chat_logprobs(generation: Generation, tokens: list[TokenEvent]) -> dict[str, Any] | None:
    if generation.logprobs is None:
        return None
    return {"content": [chat_token_logprob(generation, t) for t in tokens], "refusal": None}


def chat_message(generation: Generation, result: ChoiceResult) -> dict[str, Any]:
    calls = tool_calls(generation, result)
    if calls:
        return {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}
    return {"role": "assistant", "content": result.text, "refusal": None}


def chat_completion(generation: Generation, results: list[ChoiceResult]) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "message": chat_message(generation, r),
            "logprobs": chat_logprobs(generation, r.tokens),
            "finish_reason": finish_reason(r.done, tool_calls(generation, r)),
        }
        for i, r in enumerate(results)
    ]
    return {**envelope(generation, False), "choices": choices, "usage": usage(generation, results)}


# --- completions ---------------------------------------------------------------------------------
@dataclass
class TextLogprobs:
    """The legacy completions shape: parallel lists, and text offsets into the choice's text."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)

    def add(self, text: str, offset: int, logprob: float | None, top: dict[str, float] | None) -> None:
        self.tokens.append(text)
        self.token_logprobs.append(logprob)
        self.top_logprobs.append(top)
        self.text_offset.append(offset)

    def json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def prompt_logprobs(generation: Generation, prompt_index: int) -> TextLogprobs:
    """echo: the prompt's tokens first (the first with no log-probability: nothing comes before it)."""
    out = TextLogprobs()
    prompt = generation.prompts[prompt_index]
    offset = 0
    for token_id, score in zip(prompt.ids, prompt.scores or [None] * len(prompt.ids), strict=True):
        text = token_text(generation, token_id)[0]
        top = None if score is None else {token_text(generation, i)[0]: lp for i, lp in score.top}
        out.add(text, offset, None if score is None else score.logprob, top)
        offset += len(text)
    return out


def add_generated(generation: Generation, out: TextLogprobs, events: list[TokenEvent], offset: int) -> int:
    """The generated tokens' log-probabilities, from text offset `offset`; returns the offset after them."""
    for event in events:
        top = {
            token_text(generation, a.id)[0]: safe_log(a.prob)
            for a in event.alternatives[: generation.logprobs or 0]
        }
        out.add(token_text(generation, event.id)[0], offset, chosen_logprob(event), top)
        offset += len(event.text)
    return offset


def text_choice(generation: Generation, index: int, result: ChoiceResult) -> dict[str, Any]:
    prompt = generation.choices[index].prompt
    echoed = generation.prompts[prompt].text if generation.echo else ""
    logprobs = None
    if generation.logprobs is not None:
        out = prompt_logprobs(generation, prompt) if generation.echo else TextLogprobs()
        add_generated(generation, out, result.tokens, len(echoed))
        logprobs = out.json()
    return {
        "text": echoed + result.text,
        "index": index,
        "logprobs": logprobs,
        "finish_reason": finish_reason(result.done),
    }


def text_completion(generation: Generation, results: list[ChoiceResult]) -> dict[str, Any]:
    choices = [text_choice(generation, i, r) for i, r in enumerate(results)]
    return {**envelope(generation, False), "choices": choices, "usage": usage(generation, results)}


def completion(generation: Generation, results: list[ChoiceResult]) -> dict[str, Any]:
    """The whole response of a request that did not stream."""
    return (chat_completion if generation.kind == CHAT else text_completion)(generation, results)
