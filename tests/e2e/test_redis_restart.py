"""A Redis restart with a chat open: against a real `manage.py serve` on its own redis-server, which the
test stops and starts again on the same port while a chat page and a raw socket are open."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.conftest import free_port, require, stop_process, wait_for
from tests.e2e.conftest import Site, healthz, logged_in_page, start_site
from tests.e2e.test_site import session_cookie

pytestmark = pytest.mark.integration
ANSWERED = ("stop", "length")
CONNECTION = "document.getElementById('connection').textContent"
STREAMING_LENGTH = "(document.querySelector('[data-testid=streaming-text]')?.textContent.length ?? -1)"
# Every text the page's connection status shows, in order, from the moment this runs.
RECORD_CONNECTION = """() => {
  const status = document.getElementById('connection');
  window.__connection = [status.textContent];
  new MutationObserver(() => window.__connection.push(status.textContent))
    .observe(status, {subtree: true, childList: true, characterData: true});
}"""


class RedisServer:
    """A redis-server of the test's own, without persistence: a restart comes back empty, as a crashed
    or redeployed Redis without a volume would."""

    def __init__(self, binary: str, port: int, log_path: Path) -> None:
        self.binary, self.port, self.log_path = binary, port, log_path
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--daemonize", "no"],
            stdout=self.log_path.open("a"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self.answers, 20, f"redis-server on port {self.port}", self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM, timeout=10)
        wait_for(lambda: not self.answers(), 10, f"redis-server on port {self.port} to stop")

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    require(binary is not None, "no redis-server binary to start (and restart) a Redis of the test's own")
    assert binary is not None
    server = RedisServer(binary, free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_site(real_model_store, own_redis: RedisServer, tmp_path: Path) -> Iterator[Site]:
    data_dir = tmp_path / "site"
    data_dir.mkdir()
    running = start_site(data_dir, REDIS_URL=own_redis.url)
    yield running
    stop_process(running.process)


def ask(page, question: str) -> Any:
    """Send a message from the composer; returns the locator of its finished answer."""
    before = page.locator("li.msg.assistant").count()
    page.locator("#id_content").fill(question)
    page.get_by_role("button", name="Send").click()
    answer = page.locator("li.msg.assistant").nth(before)
    answer.get_by_test_id("stats").wait_for(timeout=120_000)
    return answer


def socket_outcome(ws) -> str:
    """A ping on a socket that was open through the restart: "pong", or how it was closed."""
    from websockets.exceptions import ConnectionClosed

    try:
        ws.send(json.dumps({"type": "ping"}))
        return json.loads(ws.recv(timeout=15))["type"]
    except ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else None}"
    except TimeoutError:
        return "no answer"


def socket_answer(site: Site, cookie: str) -> dict[str, Any]:
    """A new socket's answer to one message, read up to its "done" frame."""
    from websockets.sync.client import connect

    ws_url = site.url.replace("http://", "ws://") + "/ws/chat/"
    with connect(ws_url, origin=site.url, additional_headers={"Cookie": cookie}) as ws:
        ws.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation": None,
                    "model": DEFAULT_MODEL,
                    "content": "What is the capital of France?",
                    "settings": {"temperature": 0, "max_new_tokens": 16, "seed": 0},
                }
            )
        )
        while True:
            frame = json.loads(ws.recv(timeout=120))
            if frame["type"] in ("done", "error"):
                return frame


def test_a_chat_open_through_a_redis_restart_keeps_streaming_and_answering(
    redis_site: Site, own_redis: RedisServer, browser
) -> None:
    from websockets.sync.client import connect

    page = logged_in_page(redis_site, browser, "/chat/")
    page.wait_for_function(f"{CONNECTION} === 'Connected'", timeout=30_000)
    page.get_by_role("button", name="Deterministic").click()
    page.locator("#id_max_new_tokens").fill("16")
    first = ask(page, "What is the capital of France?")
    assert "Paris" in first.locator(".body").inner_text()
    page.evaluate(RECORD_CONNECTION)

    cookie = session_cookie(redis_site)
    ws_url = redis_site.url.replace("http://", "ws://") + "/ws/chat/"
    with connect(ws_url, origin=redis_site.url, additional_headers={"Cookie": cookie}) as raw:
        assert socket_outcome(raw) == "pong"

        # A long answer starts streaming; Redis goes away under it, and the answer streams on.
        page.locator("#id_max_new_tokens").fill("160")
        page.locator("#id_content").fill("Write a long story about a robot.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_function(f"{STREAMING_LENGTH} > 0", timeout=120_000)
        own_redis.stop()
        down_at = page.evaluate(STREAMING_LENGTH)
        page.wait_for_function(f"{STREAMING_LENGTH} > {down_at}", timeout=60_000)
        assert healthz(redis_site.url)["status"] == "down", "the site noticed nothing"
        own_redis.start()

        story = page.locator("li.msg.assistant").nth(1)
        stats = story.get_by_test_id("stats")
        stats.wait_for(timeout=120_000)
        assert any(f"stop: {reason}" in stats.inner_text() for reason in ANSWERED), stats.inner_text()
        assert story.locator(".badge.error, .badge.stopped").count() == 0
        assert len(story.locator(".body").inner_text()) > down_at

        # The page never lost its socket, and the next message gets a whole answer too.
        page.locator("#id_max_new_tokens").fill("16")
        third = ask(page, "What is the capital of Germany?")
        shown = page.evaluate("window.__connection")
        assert set(shown) == {"Connected"}, shown
        assert any(f"stop: {reason}" in third.get_by_test_id("stats").inner_text() for reason in ANSWERED)
        assert third.locator(".body").inner_text().strip()

        # The raw socket that was open through the restart still answers, and so does a new one.
        outcome = socket_outcome(raw)
    assert outcome == "pong", outcome
    done = socket_answer(redis_site, cookie)
    assert done["type"] == "done", done
    assert done["reason"] in ANSWERED, done
    assert "Paris" in done["text"]

    assert redis_site.process.poll() is None, redis_site.log()
    wait_for(lambda: healthz(redis_site.url)["status"] == "ok", 60, "/healthz to report ok again")
    log = redis_site.log_path.read_text(errors="replace")
    assert "Exception inside application" not in log, redis_site.log()
