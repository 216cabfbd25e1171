"""Running a planned generation on the engine: every choice's stream read together, as one response or as
server-sent events (`data: {chunk}` ... `data: [DONE]`).

However a response ends, every stream is cancelled once nobody reads it: a client that disconnects
cancels the view's task (Django's ASGI handler does on `http.disconnect`), the cancellation reaches the
`await` here, and the `finally` cancels the engine's streams before their next token (as the chat's
consumer does when its socket closes). The tokens generated until then are still counted as usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from llmcore.engine import DoneEvent, Event, FinishReason, StatsEvent, TokenEvent
from playground.openai_api.errors import OpenAIError, error_event
from playground.openai_api.services.generation import CHAT, Generation
from playground.openai_api.services.shapes import (
    ChoiceResult,
    TextLogprobs,
    add_generated,
    calling,
    chat_logprobs,
    completion,
    envelope,
    finish_reason,
    prompt_logprobs,
    tool_calls,
    usage,
)

DONE = b"data: [DONE]\n\n"


class Usage(Protocol):
    """An API key's admission (or a session's), which counts the tokens a response used."""

    async def arecord(self, model: str, prompt_tokens: int, completion_tokens: int) -> None: ...


class Run:
    """One generation's streams and what they delivered, choice by choice."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.results = [ChoiceResult() for _ in generation.choices]
        for choice in generation.choices:
            if choice.request is None:  # max_tokens 0: the prompt is scored, nothing generated
                self.results[choice.index].done = DoneEvent(reason=FinishReason.LENGTH, text="")

    async def events(self) -> AsyncGenerator[tuple[int, Event], None]:
        """Every choice's events as they come, with the choice's index; each is also kept in results."""
        queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        engine = self.generation.engine
        streams = [(c.index, engine.submit(c.request)) for c in self.generation.choices if c.request]

        async def pump(index: int, stream: Any) -> None:
            async for event in stream:
                queue.put_nowait((index, event))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in streams]
        try:
            left = len(streams)
            while left:
                index, event = await queue.get()
                self.keep(index, event)
                left -= isinstance(event, DoneEvent)
                yield index, event
        finally:  # done, failed, or nobody reads any more (a client gone): stop every stream now
            for _, stream in streams:
                stream.cancel()
            for task in tasks:
                task.cancel()

    def keep(self, index: int, event: Event) -> None:
        result = self.results[index]
        if isinstance(event, TokenEvent):
            result.tokens.append(event)
        elif isinstance(event, StatsEvent):
            result.stats = event
        elif isinstance(event, DoneEvent):
            result.done = event

    async def record(self, admission: Usage) -> None:
        numbers = usage(self.generation, self.results)
        await asyncio.shield(
            admission.arecord(self.generation.model, numbers["prompt_tokens"], numbers["completion_tokens"])
        )

    # --- one response -----------------------------------------------------------------------------
    async def response(self, admission: Usage) -> dict[str, Any]:
        try:
            async with contextlib.aclosing(self.events()) as events:
                async for _, event in events:
                    if isinstance(event, DoneEvent) and event.reason == FinishReason.ERROR:
                        raise engine_error(event)
        finally:
            await self.record(admission)
        return completion(self.generation, self.results)

    # --- server-sent events -------------------------------------------------------------------------
    async def sse(self, admission: Any) -> AsyncGenerator[bytes, None]:
        """The stream's events as chunks; `admission` (an async context manager) is held until the end."""
        async with admission:
            try:
                for index in range(len(self.results)):
                    for chunk in self.opening(index):
                        yield data(chunk)
                async with contextlib.aclosing(self.events()) as events:
                    async for index, event in events:
                        if isinstance(event, TokenEvent):
                            token = self.token_chunk(index, event)
                            if token is not None:
                                yield data(token)
                        elif isinstance(event, DoneEvent):
                            if event.reason == FinishReason.ERROR:
                                yield error_event(engine_error(event))
                                return
                            for chunk in self.closing(index, event):
                                yield data(chunk)
                if self.generation.include_usage:
                    yield data({**envelope(self.generation, True), "choices": [], "usage": self.usage()})
                yield DONE
            finally:
                await self.record(admission)

    def usage(self) -> dict[str, int]:
        return usage(self.generation, self.results)

    def chunk(self, index: int, part: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        g = self.generation
        body = {"index": index, "logprobs": None, **part, "finish_reason": reason}
        extra = {"usage": None} if g.include_usage else {}
        return {**envelope(g, True), "choices": [body], **extra}

    def opening(self, index: int) -> list[dict[str, Any]]:
        """A chat choice starts with its role; an echoing completion with its prompt."""
        g = self.generation
        if g.kind == CHAT:
            return [self.chunk(index, {"delta": {"role": "assistant", "content": ""}})]
        chunks = []
        if g.echo:
            prompt = g.choices[index].prompt
            echoed = prompt_logprobs(g, prompt).json() if g.logprobs is not None else None
            chunks.append(self.chunk(index, {"text": g.prompts[prompt].text, "logprobs": echoed}))
        done = self.results[index].done
        if done is not None:  # max_tokens 0: nothing to wait for
            chunks += self.closing(index, done)
        return chunks

    def token_chunk(self, index: int, event: TokenEvent) -> dict[str, Any] | None:
        g = self.generation
        if not event.text and g.logprobs is None:
            return None  # held back (part of a character, a possible stop sequence): comes later
        if calling(g, self.results[index]):
            return None  # tool calls: they come whole when the answer is done
        if g.kind == CHAT:
            return self.chunk(
                index, {"delta": {"content": event.text}, "logprobs": chat_logprobs(g, [event])}
            )
        logprobs = None
        if g.logprobs is not None:
            logprobs = TextLogprobs()
            add_generated(g, logprobs, [event], self.offset(index) - len(event.text))
        return self.chunk(index, {"text": event.text, "logprobs": logprobs and logprobs.json()})

    def offset(self, index: int) -> int:
        """Characters of this choice's text so far (echoed prompt included): the next token's offset."""
        g = self.generation
        echoed = len(g.prompts[g.choices[index].prompt].text) if g.echo else 0
        return echoed + sum(len(t.text) for t in self.results[index].tokens)

    def closing(self, index: int, done: DoneEvent) -> list[dict[str, Any]]:
        """Text no token carried (held back until the end), then the finish reason."""
        chunks = []
        empty: dict[str, Any] = {"delta": {}} if self.generation.kind == CHAT else {"text": ""}
        calls = tool_calls(self.generation, self.results[index])
        if calls:
            delta = {"tool_calls": [{"index": k, **call} for k, call in enumerate(calls)]}
            return [self.chunk(index, {"delta": delta}), self.chunk(index, empty, "tool_calls")]
        if calling(self.generation, self.results[index]):  # a call cut short: its text, as content
            done = dataclasses.replace(done, tail=done.text)
        if done.tail:
            part = {"delta": {"content": done.tail}} if self.generation.kind == CHAT else {"text": done.tail}
            chunks.append(self.chunk(index, part))
        chunks.append(self.chunk(index, empty, finish_reason(done)))
        return chunks


def data(chunk: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(chunk)}\n\n".encode()


def engine_error(done: DoneEvent) -> OpenAIError:
    """The engine could not run the request (its queue is full, its KV cache cannot hold it): the
    server's state, not the request's fault, so a 503 the client may retry."""
    return OpenAIError(f"The engine could not run this request: {done.error}", 503, code="engine_unavailable")
