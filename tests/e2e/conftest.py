"""A real site for end-to-end tests: `manage.py serve` (Daphne + a Celery worker) on a free port, with
its own data folder and the real default model in its store."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    DOWNLOAD_CACHE,
    REAL_MODEL_STORE,
    ROOT,
    free_port,
    manage,
    require,
    site_env,
    stop_process,
    wait_for,
)

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = ROOT / "var" / "test-artifacts"


@dataclass
class Site:
    url: str
    env: dict[str, str]
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    def login_link(self) -> str:
        return manage(self.env, "login_link", "--base-url", self.url).strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def get(url: str, timeout: float = 10) -> tuple[int, dict, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def logged_in_page(site: Site, browser, path: str = "/models/"):
    """A new browser page, logged in through a one-time link, opened at `path`."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(site.login_link())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site.url}/models/")
    if path != "/models/":
        page.goto(f"{site.url}{path}")
    return page


# Sites started here show /healthz details to this token (strangers get the ok flags only).
HEALTHZ_TOKEN = "e2e-healthz-token"


def healthz(url: str) -> dict:
    request = urllib.request.Request(f"{url}/healthz", headers={"Authorization": f"Bearer {HEALTHZ_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


# What the web server logs when its background preload of the default model has ended (either way).
PRELOAD_DONE = "the chat's preload"


def start_site(data_dir: Path, **env_extra: str) -> Site:
    port = free_port()
    # The download cache is the tests' shared one, so a model pulled from a page is downloaded once.
    shared = {"HEALTHZ_TOKEN": HEALTHZ_TOKEN, "DOWNLOAD_CACHE_DIR": str(DOWNLOAD_CACHE)}
    env = site_env(data_dir, MODEL_DIR=str(REAL_MODEL_STORE), **{**shared, **env_extra})
    manage(env, "migrate", "--noinput")
    manage(env, "ensure_admin")
    log_path = data_dir / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    site = Site(f"http://127.0.0.1:{port}", env, data_dir, proc, log_path)
    try:
        wait_for(lambda: get(f"{site.url}/healthz", timeout=5)[0] == 200, 120, "a healthy site", proc)
        if env.get("PRELOAD_DEFAULT_MODEL", "1") != "0":  # as a user finds it once the server has started
            wait_for(lambda: PRELOAD_DONE in log_path.read_text(errors="replace"), 180, "the preload", proc)
    except AssertionError as exc:
        stop_process(proc)
        raise AssertionError(f"{exc}\n--- serve log ---\n{site.log()}") from None
    return site


@pytest.fixture(scope="session")
def site(real_model_store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = start_site(tmp_path_factory.mktemp("site"))
    yield running
    stop_process(running.process)


def wait_for_function(
    page, expression: str, *, arg=None, timeout: float | None = None, polling: float | str | None = None
):
    """page.wait_for_function's contract (a truthy value of `expression`, called with `arg` when it is a
    function, within `timeout` ms) without eval in the page."""
    from playwright.sync_api import Error, TimeoutError

    deadline = time.monotonic() + (30_000 if timeout is None else timeout) / 1000
    interval = polling / 1000 if isinstance(polling, int | float) else 0.1
    while True:
        try:
            value = page.evaluate(expression, arg)
            if value:
                return value
        except Error as exc:  # a navigation destroyed the context mid-evaluate: try again on the next page
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timeout {timeout}ms exceeded waiting for {expression[:200]}")
        time.sleep(interval)


class CheckedBrowser:
    """A Playwright browser whose every page records console messages and page errors, so that a test
    fails when the site breaks its own Content-Security-Policy (an inline style, script or handler that
    the browser refused: the page looks fine in the test and is broken for a user)."""

    def __init__(self, browser) -> None:
        self._browser = browser
        self.violations: list[str] = []

    def watch(self, page):
        def on_console(message) -> None:
            if "Content Security Policy" in message.text:
                self.violations.append(f"{page.url}: {message.text}")

        def on_error(error) -> None:
            if "Content Security Policy" in str(error):
                self.violations.append(f"{page.url}: {error}")

        page.on("console", on_console)
        page.on("pageerror", on_error)
        # Playwright's own wait_for_function evals its predicate inside the page, which the policy
        # (rightly) forbids; this one polls through page.evaluate, which the policy does not govern.
        page.wait_for_function = functools.partial(wait_for_function, page)
        return page

    def new_page(self, *args, **kwargs):
        return self.watch(self._browser.new_page(*args, **kwargs))

    def new_context(self, *args, **kwargs):
        context = self._browser.new_context(*args, **kwargs)
        context.on("page", self.watch)
        return context

    def __getattr__(self, name: str):
        return getattr(self._browser, name)


@pytest.fixture
def browser():
    require(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        checked = CheckedBrowser(
            p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        )
        yield checked
        checked.close()
    if checked.violations:
        pytest.fail("the site broke its Content-Security-Policy:\n" + "\n".join(checked.violations))
