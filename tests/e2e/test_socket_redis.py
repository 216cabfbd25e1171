"""End to end over the Redis channel layer: sockets that sit idle, many sockets at once, sockets that
leave mid-answer, and the origin check - against a real `manage.py serve` with REDIS_URL set."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.conftest import redis_available, redis_url_for_tests, require, stop_process, wait_for
from tests.e2e.conftest import Site, get, start_site
from tests.e2e.test_site import session_cookie

pytestmark = pytest.mark.integration
# Longer than channels-redis's 5 s block on Redis and redis-py's 5 s default read timeout together.
IDLE_S = 35
ANSWERED = ("stop", "length")


@pytest.fixture(scope="module")
def redis_site(real_model_store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    url = redis_url_for_tests()
    require(redis_available(url), f"no Redis answers at {url}")
    import redis

    redis.Redis.from_url(url).flushdb()  # a test database: leftovers from an earlier run must not count
    running = start_site(tmp_path_factory.mktemp("redis-site"), REDIS_URL=url)
    yield running
    stop_process(running.process)


@pytest.fixture(scope="module")
def cookie(redis_site: Site) -> str:
    return session_cookie(redis_site)


def ws_url(site: Site, path: str) -> str:
    return site.url.replace("http://", "ws://") + path


def send_frame(content: str, **settings: Any) -> str:
    return json.dumps(
        {
            "type": "send",
            "conversation": None,
            "model": DEFAULT_MODEL,
            "content": content,
            "settings": {"temperature": 0, "seed": 0, **settings},
        }
    )


async def connect(site: Site, path: str, cookie: str):
    import websockets

    return await websockets.connect(
        ws_url(site, path), origin=site.url, additional_headers={"Cookie": cookie}
    )


async def answer(ws, content: str = "What is the capital of France?", **settings: Any) -> dict[str, Any]:
    """Send one message and read frames up to its "done"; a closed socket reads as its close code."""
    from websockets.exceptions import ConnectionClosed

    try:
        await ws.send(send_frame(content, **{"max_new_tokens": 8, **settings}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if frame["type"] == "done":
                return frame
            # "queued": more chats than ENGINE_MAX_SEQUENCES at once wait in line for a seat
            # "prefill": many prompts share a step's chunk budget, so some are read over several steps
            assert frame["type"] in ("started", "queued", "prefill", "token", "stats"), frame
    except ConnectionClosed as exc:
        return {"type": "closed", "code": exc.rcvd.code if exc.rcvd else None}


async def ping(ws) -> dict[str, Any]:
    from websockets.exceptions import ConnectionClosed

    try:
        await ws.send(json.dumps({"type": "ping"}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))
    except ConnectionClosed as exc:
        return {"type": "closed", "code": exc.rcvd.code if exc.rcvd else None}


def outcome(frame: dict[str, Any]) -> str:
    if frame["type"] == "closed":
        return f"closed {frame['code']}"
    if frame["type"] == "done":
        return "answered" if frame["reason"] in ANSWERED else f"done {frame['reason']}: {frame['error']}"
    return frame["type"]


def test_idle_chat_and_health_sockets_still_work_after_35_seconds(redis_site: Site, cookie: str) -> None:
    async def scenario() -> dict[str, list[str]]:
        chats = [await connect(redis_site, "/ws/chat/", cookie) for _ in range(3)]
        healths = [await connect(redis_site, "/ws/health/", cookie) for _ in range(3)]
        for ws in healths:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
        await asyncio.sleep(IDLE_S)  # one wait for every socket
        result = {
            "chat": [outcome(await answer(ws)) for ws in chats],
            "health": [outcome(await ping(ws)) for ws in healths],
        }
        for ws in chats + healths:
            await ws.close()
        return result

    result = asyncio.run(scenario())
    assert result == {"chat": ["answered"] * 3, "health": ["pong"] * 3}, redis_site.log()
    assert "Timeout reading from" not in redis_site.log_path.read_text(errors="replace")


def test_twenty_sockets_chatting_at_once_all_get_their_answers(redis_site: Site, cookie: str) -> None:
    async def one(i: int) -> str:
        async with await connect(redis_site, "/ws/chat/", cookie) as ws:
            return outcome(await answer(ws, f"Say hello to person number {i}."))

    async def scenario() -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(20))))

    assert asyncio.run(scenario()) == ["answered"] * 20, redis_site.log()


def export(site: Site, cookie: str, conversation: int) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{site.url}/chat/{conversation}/export.json", headers={"Cookie": cookie}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def last_status(site: Site, cookie: str, conversation: int) -> str:
    return export(site, cookie, conversation)["messages"][-1]["status"]


def test_a_storm_of_sockets_leaving_mid_answer_saves_every_answer_as_stopped(
    redis_site: Site, cookie: str
) -> None:
    async def leave_mid_answer() -> int:
        ws = await connect(redis_site, "/ws/chat/", cookie)
        await ws.send(send_frame("Write a long story about a lighthouse keeper.", max_new_tokens=400))
        started = json.loads(await asyncio.wait_for(ws.recv(), 120))
        assert started["type"] == "started", started
        token = json.loads(await asyncio.wait_for(ws.recv(), 120))
        # beyond ENGINE_MAX_SEQUENCES a seat frees as others leave; prompts arriving together share a
        # step's chunk budget, so a prompt can be read over several steps first
        while token["type"] in ("queued", "prefill"):
            token = json.loads(await asyncio.wait_for(ws.recv(), 120))
        assert token["type"] == "token", token
        await ws.close()  # mid-answer: 399 tokens still to come
        return started["conversation"]

    async def storm() -> list[int]:
        return list(await asyncio.gather(*(leave_mid_answer() for _ in range(30))))

    conversations = asyncio.run(storm())
    assert len(set(conversations)) == 30

    def all_saved() -> list[str] | None:
        statuses = [last_status(redis_site, cookie, c) for c in conversations]
        return None if "streaming" in statuses else statuses

    statuses = wait_for(all_saved, 60, "every answer to be saved")
    assert statuses == ["stopped"] * 30
    assert redis_site.process.poll() is None, redis_site.log()
    assert get(f"{redis_site.url}/healthz")[0] == 200

    async def afterwards() -> str:
        async with await connect(redis_site, "/ws/chat/", cookie) as ws:
            return outcome(await answer(ws))

    assert asyncio.run(afterwards()) == "answered", redis_site.log()


def test_a_page_on_another_port_of_the_same_host_is_refused(redis_site: Site, cookie: str) -> None:
    import websockets
    from websockets.exceptions import InvalidStatus

    async def status(origin: str) -> int | str:
        try:
            async with websockets.connect(
                ws_url(redis_site, "/ws/health/"), origin=origin, additional_headers={"Cookie": cookie}
            ) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(status(redis_site.url)) == "hello"
    assert asyncio.run(status("http://127.0.0.1:9999")) == 403
