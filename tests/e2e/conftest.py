"""A real site for end-to-end tests: `manage.py serve` (Daphne + a Celery worker) on a free port, with
its own data folder and the real default model in its store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
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


def get(url: str, timeout: float = 10) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def logged_in_page(site: Site, browser, path: str = "/models/"):  # type: ignore[no-untyped-def]
    """A new browser page, logged in through a one-time link, opened at `path`."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(site.login_link())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site.url}/models/")
    if path != "/models/":
        page.goto(f"{site.url}{path}")
    return page


def healthz(url: str) -> dict:  # type: ignore[type-arg]
    return json.loads(get(f"{url}/healthz")[2])


def start_site(data_dir: Path, **env_extra: str) -> Site:
    port = free_port()
    env = site_env(data_dir, MODEL_DIR=str(REAL_MODEL_STORE), **env_extra)
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
    except AssertionError as exc:
        stop_process(proc)
        raise AssertionError(f"{exc}\n--- serve log ---\n{site.log()}") from None
    return site


@pytest.fixture(scope="session")
def site(real_model_store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    running = start_site(tmp_path_factory.mktemp("site"))
    yield running
    stop_process(running.process)


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    require(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
