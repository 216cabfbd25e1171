"""End to end: sixteen streaming API clients (the official `openai` SDK, one thread each) and two browser
chats over the WebSocket at once, on the session's site serving the real default model. Every stream
and every chat ends whole, and the engine decoded them together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.conftest import manage
from tests.e2e.conftest import Site
from tests.e2e.test_site import session_cookie

pytestmark = pytest.mark.integration
API_CLIENTS = 16
CHATS = 2
API_MAX_TOKENS = 16
# The chats ask for more, so they are still decoding when the API streams arrive and join their passes.
CHAT_MAX_TOKENS = 32
# A key whose limits let all sixteen stream at once (the default key allows API_KEY_CONCURRENT_STREAMS).
MAKE_KEY = (
    "from django.contrib.auth.models import User; from playground.apikeys.services import create_key; "
    "key, secret = create_key(User.objects.get(username='admin'), 'concurrency test'); "
    f"key.concurrent_streams = {API_CLIENTS}; key.requests_per_minute = {4 * API_CLIENTS}; key.save(); "
    "print(secret)"
)


def api_stream(site: Site, secret: str, number: int, go: threading.Event) -> dict[str, Any]:
    """One client's streamed chat completion: its text, finish reasons and usage."""
    import openai

    client = openai.OpenAI(base_url=f"{site.url}/v1", api_key=secret, max_retries=0, timeout=120)
    go.wait(60)
    stream = client.chat.completions.create(
        model=DEFAULT_MODEL,
        messages=[{"role": "user", "content": f"Name a colour, a fruit and an animal (list {number})."}],
        temperature=0,
        max_tokens=API_MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    return {
        "text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
        "reasons": [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
        "usage": chunks[-1].usage if chunks else None,
    }


async def chats(site: Site, go: threading.Event) -> list[list[dict[str, Any]]]:
    """CHATS browser-style chats, each to its "done" frame; `go` is set once all of them are decoding."""
    import websockets

    ws_url = site.url.replace("http://", "ws://") + "/ws/chat/"
    cookie = session_cookie(site)
    decoding = asyncio.Barrier(CHATS + 1)

    async def chat(ws: Any, number: int) -> list[dict[str, Any]]:
        frame = {
            "type": "send",
            "conversation": None,
            "model": DEFAULT_MODEL,
            "content": f"Write a long story about lighthouse number {number}.",
            "settings": {"temperature": 0, "seed": 0, "max_new_tokens": CHAT_MAX_TOKENS},
        }
        await ws.send(json.dumps(frame))
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            if frames[-1]["type"] == "token" and sum(f["type"] == "token" for f in frames) == 1:
                await decoding.wait()
        return frames

    async def release() -> None:
        await asyncio.wait_for(decoding.wait(), 60)
        go.set()

    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(
                websockets.connect(ws_url, origin=site.url, additional_headers={"Cookie": cookie})
            )
            for _ in range(CHATS)
        ]
        try:
            answers = await asyncio.gather(release(), *(chat(ws, n) for n, ws in enumerate(sockets)))
        finally:
            go.set()  # a chat that failed before its first token must not leave the API clients waiting
    return answers[1:]


def test_sixteen_api_streams_and_two_chats_share_the_engine(site: Site) -> None:
    secret = manage(site.env, "shell", "-c", MAKE_KEY).strip().splitlines()[-1]
    log_before = len(site.log_path.read_text(errors="replace"))
    go = threading.Event()  # the API streams start while both chats are decoding
    with ThreadPoolExecutor(API_CLIENTS) as pool:
        streams = [pool.submit(api_stream, site, secret, n, go) for n in range(API_CLIENTS)]
        answers = asyncio.run(chats(site, go))
        results = [s.result(timeout=120) for s in streams]  # a stream's error is raised here

    for n, result in enumerate(results):
        assert result["text"].strip(), f"stream {n} said nothing: {result}"
        assert result["reasons"] in (["stop"], ["length"]), f"stream {n}: {result}"
        usage = result["usage"]
        assert usage is not None, f"stream {n} ended without its usage chunk: {result}"
        assert 0 < usage.completion_tokens <= API_MAX_TOKENS, f"stream {n}: {result}"
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    for frames in answers:
        kinds = [f["type"] for f in frames]
        done = frames[-1]
        assert done["type"] == "done", frames[-3:]
        assert done["reason"] in ("stop", "length"), done
        assert kinds[-2] == "stats"
        assert "".join(f["text"] for f in frames if f["type"] == "token") + done["tail"] == done["text"]
        # More answers shared a forward pass with this chat than there were chats: API streams did.
        assert frames[-2]["batch_size_max"] > CHATS, frames[-2]
    new_log = site.log_path.read_text(errors="replace")[log_before:]
    assert "Traceback" not in new_log, new_log[-3000:]
