"""Models served elsewhere: any OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, LM Studio, or
another copy of this playground) answering a chat as a stream of the engine's own events.

A chat on a remote model reads like one on a local engine: `RemoteStream` yields TokenEvent, StatsEvent
and DoneEvent (llmcore.engine.types), so the chat's relay, saving and token inspector take either. What a
remote server cannot give is said, not invented: token ids are unknown (REMOTE_TOKEN_ID), a token's
probability and alternatives are there only when the server returns logprobs, and the prompt's token
count is known only from the server's usage at the end.

The client is the official `openai` package over an httpx client of our own that never follows a
redirect: the base URL an admin checked is the only place a request goes (check_base_url), so a server
that answers with a redirect cannot turn the playground into a proxy for somewhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from llmcore.engine.types import (
    Alternative,
    DoneEvent,
    Event,
    FinishReason,
    StatsEvent,
    TokenEvent,
)
from llmcore.errors import UserError

REMOTE_TOKEN_ID = -1  # a remote server names its tokens by text only: no id in this model's vocabulary
TOP_LOGPROBS = 5  # alternatives asked per token, as many as the local engine lists (top_alternatives)
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0  # between two chunks of a stream: a big model's prefill on a busy server


class RemoteError(UserError, ValueError):
    """A base URL, model id or answer of a remote server that cannot be used; the message says why."""


@dataclass(frozen=True)
class RemoteServer:
    """Where a remote model is served: its OpenAI base URL (ending in /v1 for most servers), the
    server's own model id, and the API key it asks for (kept server-side; "" when it needs none)."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)  # never in a log line or an error message

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc


def check_base_url(url: str, allowed_hosts: Iterable[str]) -> str:
    """The base URL, normalized (no trailing slash), if requests may go there; else RemoteError.

    http or https only; no user name or password in it (the key has its own field, kept server-side);
    no query or fragment; and its host must be one of `allowed_hosts` (settings.REMOTE_MODEL_HOSTS,
    names or addresses, each optionally with ":port"). The allow-list is what keeps the server from
    being pointed at whatever an admin's browser, or a forged form, names: nothing is allowed by default.
    """
    text = (url or "").strip()
    if not text:
        raise RemoteError("Give the server's base URL, such as http://gpu-box:8000/v1.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise RemoteError(f"{text!r} is not a URL: {str(exc).rstrip('.')}.") from None
    if parts.scheme not in ("http", "https"):
        raise RemoteError(f"Use an http:// or https:// URL, not {parts.scheme or 'one without a scheme'}.")
    if parts.username is not None or parts.password is not None:
        raise RemoteError(
            "Take the user name and password out of the URL: give the server's key in the API key field, "
            "which is kept on the server and never shown again."
        )
    if parts.query or parts.fragment:
        raise RemoteError("The base URL takes no query (?...) or fragment (#...).")
    host = (parts.hostname or "").lower()
    if not host:
        raise RemoteError(f"{text!r} names no host.")
    allowed = {h.strip().lower() for h in allowed_hosts if h.strip()}
    if not allowed:
        raise RemoteError(
            "No remote hosts are allowed on this site: an admin of the server sets REMOTE_MODEL_HOSTS "
            "(a comma-separated list of host names or addresses) first."
        )
    shown = f"[{host}]" if _is_ipv6(host) else host
    if shown not in allowed and f"{shown}:{port}" not in allowed and host not in allowed:
        raise RemoteError(
            f"{shown} is not in REMOTE_MODEL_HOSTS ({', '.join(sorted(allowed))}): only those hosts can "
            "serve remote models here."
        )
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc.lower(), path, "", ""))


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _client(server: RemoteServer, asynchronous: bool) -> Any:
    import openai

    options: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": server.api_key or "none",  # the SDK insists on one; servers without keys ignore it
        "max_retries": 0,  # a chat is retried by its user, who sees the error
        "timeout": openai.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
    }
    # follow_redirects=False: the SDK's own client follows redirects (see the module's docstring)
    if asynchronous:
        return openai.AsyncOpenAI(
            **options, http_client=openai.DefaultAsyncHttpxClient(follow_redirects=False)
        )
    return openai.OpenAI(**options, http_client=openai.DefaultHttpxClient(follow_redirects=False))


def error_text(exc: Exception, server: RemoteServer) -> str:
    """What went wrong, for a person: the server's own message when it sent one, never the key."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = body.get("message") or (body.get("error") or {}).get("message") if body else None
        text = f"{server.host} answered {exc.status_code}: {detail or exc.message}"
    elif isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        text = f"Could not reach {server.host}: {type(cause).__name__}: {cause}"
    else:
        text = f"{server.host}: {type(exc).__name__}: {exc}"
    if server.api_key:
        text = text.replace(server.api_key, "***")
    return text[:500]


@dataclass(frozen=True)
class RemoteModelInfo:
    id: str
    context_length: int | None
    owned_by: str


def list_models(server: RemoteServer) -> list[RemoteModelInfo]:
    """GET {base_url}/models: what the server serves, with a context length where it says one (vLLM's
    max_model_len, llama.cpp's meta.n_ctx_train, or this playground's max_model_len). RemoteError when it
    cannot be read."""
    client = _client(server, asynchronous=False)
    try:
        page = client.models.list()
        found = []
        for model in page.data:
            extra = model.model_extra or {}
            meta = extra.get("meta")
            meta = meta if isinstance(meta, dict) else {}
            length = extra.get("max_model_len") or extra.get("context_length") or meta.get("n_ctx_train")
            found.append(
                RemoteModelInfo(
                    id=model.id,
                    context_length=length if isinstance(length, int) and length > 0 else None,
                    owned_by=str(getattr(model, "owned_by", "") or ""),
                )
            )
        return found
    except Exception as exc:  # noqa: BLE001 - every failure is the admin's to read, in words
        raise RemoteError(error_text(exc, server)) from None
    finally:
        client.close()


@dataclass(frozen=True)
class RemoteRequest:
    """One chat answer asked of a remote server: OpenAI chat messages and the sampler settings it takes.
    `extra` goes in the body as is (top_k, min_p, repetition_penalty: vLLM, llama.cpp and this playground
    read them; a server that does not know them may ignore them)."""

    messages: list[dict[str, str]]
    max_tokens: int
    seed: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    response_format: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    top_logprobs: int = TOP_LOGPROBS

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.top_logprobs:
            body |= {"logprobs": True, "top_logprobs": self.top_logprobs}
        if self.stop:
            body["stop"] = list(self.stop)
        if self.response_format:
            body["response_format"] = self.response_format
        if self.extra:
            body["extra_body"] = dict(self.extra)
        return body


FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


class RemoteStream:
    """The events of one chat answer from a remote server, read once with `async for` in one event
    loop; `cancel()` (from that loop) stops it before its next token and closes the connection, so the
    server stops generating too. Ends with a DoneEvent whatever happens: "error" with the reason when
    the server refuses or the connection fails."""

    def __init__(self, server: RemoteServer, request: RemoteRequest) -> None:
        self.server = server
        self.request = request
        self._cancelled = False
        self._task: asyncio.Task[None] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def __aiter__(self) -> AsyncIterator[Event]:
        events: asyncio.Queue[Event] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._read(events))
        try:
            while True:
                event = await events.get()
                if self._cancelled and isinstance(event, TokenEvent):
                    continue
                yield event
                if isinstance(event, DoneEvent):
                    return
        finally:
            if not self._task.done():
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self, events: asyncio.Queue[Event]) -> None:
        reader = _Reader(self.request)
        client = None
        reason: FinishReason = FinishReason.STOP
        error: str | None = None
        try:
            if self._cancelled:
                raise asyncio.CancelledError
            client = _client(self.server, asynchronous=True)
            stream = await client.chat.completions.create(model=self.server.model, **self.request.body())
            async with stream:
                async for chunk in stream:
                    for event in reader.events(chunk):
                        events.put_nowait(event)
            reason = reader.reason
        except asyncio.CancelledError:
            reason = FinishReason.CANCELLED
        except Exception as exc:  # noqa: BLE001 - the answer ends with the error, in words
            reason, error = FinishReason.ERROR, error_text(exc, self.server)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):  # a connection already gone
                    await asyncio.shield(client.close())
            if self._cancelled and reason != FinishReason.ERROR:
                reason = FinishReason.CANCELLED
            events.put_nowait(reader.stats())
            events.put_nowait(DoneEvent(reason=reason, text=reader.text, error=error))


class _Reader:
    """Chunks of a chat completion stream -> token events. With logprobs, each entry of a chunk's
    logprobs.content is one token (its text, probability and top alternatives); without them, each
    chunk's text is counted as one token, which is what servers send one chunk at a time."""

    def __init__(self, request: RemoteRequest) -> None:
        self.request = request
        self.started = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None
        self.index = 0
        self.parts: list[str] = []
        self.reason: FinishReason = FinishReason.STOP
        self.usage: Any = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def events(self, chunk: Any) -> list[TokenEvent]:
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        found: list[TokenEvent] = []
        for choice in chunk.choices or []:
            if choice.index != 0:
                continue
            content = choice.delta.content if choice.delta else None
            entries = (choice.logprobs.content or []) if choice.logprobs else []
            if entries:
                texts = [e.token for e in entries]
                if content is not None and "".join(texts) != content:
                    # The token texts do not spell the chunk's text (a character's bytes split across
                    # tokens): the text is what the user reads, so the first token carries it all.
                    texts = [content] + [""] * (len(texts) - 1)
                for text, entry in zip(texts, entries, strict=True):
                    found.append(self.token(text, entry.logprob, entry.top_logprobs or []))
            elif content:
                found.append(self.token(content, None, []))
            if choice.finish_reason:
                self.reason = FINISH.get(choice.finish_reason, FinishReason.STOP)
        return found

    def token(self, text: str, logprob: float | None, top: list[Any]) -> TokenEvent:
        now = time.perf_counter()
        self.first = self.first if self.first is not None else now
        self.last = now
        self.parts.append(text)
        prob = math.exp(logprob) if logprob is not None else math.nan
        alternatives = [
            Alternative(REMOTE_TOKEN_ID, t.token, math.exp(t.logprob), rank)
            for rank, t in enumerate(top, start=1)
        ]
        if alternatives and all(a.label != text for a in alternatives):
            alternatives.append(Alternative(REMOTE_TOKEN_ID, text, prob, 0))  # ranked below the top ones
        event = TokenEvent(
            index=self.index,
            id=REMOTE_TOKEN_ID,
            text=text,
            logprob=logprob if logprob is not None else math.nan,
            prob=prob,
            model_logprob=math.nan,  # the server's logprobs are after its sampler, as OpenAI's are
            alternatives=alternatives,
            time=now,
        )
        self.index += 1
        return event

    def stats(self) -> StatsEvent:
        generated = self.usage.completion_tokens if self.usage else self.index
        prompt = self.usage.prompt_tokens if self.usage else 0
        decode = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
        return StatsEvent(
            prompt_tokens=prompt,
            generated_tokens=generated,
            time_to_first_token_s=(self.first - self.started) if self.first is not None else None,
            tokens_per_s=(self.index - 1) / decode if self.index > 1 and decode > 0 else None,
            seed=self.request.seed,
            max_new_tokens=self.request.max_tokens,
            max_new_tokens_requested=self.request.max_tokens,
            clamped=False,
            context_length=0,
            provenance={},
            batch_size_max=0,  # how the server batched it is not known here
            batch_size_mean=0.0,
        )
