"""End to end: a real WebSocket client chats with the default model through Daphne."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.e2e.conftest import Site
from tests.e2e.test_site import session_cookie

pytestmark = pytest.mark.integration


def test_the_default_model_streams_an_answer_over_the_socket(site: Site) -> None:
    import websockets

    ws_url = site.url.replace("http://", "ws://") + "/ws/chat/"
    cookie = session_cookie(site)

    async def scenario() -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        async with websockets.connect(ws_url, origin=site.url, additional_headers={"Cookie": cookie}) as ws:
            await ws.send("not json")
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            await ws.send(
                json.dumps(
                    {
                        "type": "send",
                        "conversation": None,
                        "model": DEFAULT_MODEL,
                        "content": "What is the capital of France?",
                        "settings": {"temperature": 0, "max_new_tokens": 48, "seed": 0},
                    }
                )
            )
            while frames[-1]["type"] != "done":
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 120)))
        return frames

    frames = asyncio.run(scenario())
    bad_json, started, *rest = frames
    assert bad_json["type"] == "error"
    assert "not valid JSON" in bad_json["error"]
    assert started["type"] == "started", started
    assert started["prompt_tokens"] > 0
    tokens = [f for f in rest if f["type"] == "token"]
    done = rest[-1]
    assert tokens
    assert "".join(t["text"] for t in tokens) + done["tail"] == done["text"]
    assert "Paris" in done["text"]
    assert done["reason"] == "stop"
    assert [f["type"] for f in rest[-2:]] == ["stats", "done"]
