"""A jobs site with real processes for the tests that drive it: Daphne serving the site, one Celery worker
process (concurrency 1), a broker (Redis or the embedded one), logged in over HTTP like a user."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.conftest import ROOT, TINY_NAME, free_port, manage, site_env, stop_process, wait_for

# Short heartbeats and timeouts, so lost workers and messages are found within seconds.
FAST = {
    "WORKER_HEARTBEAT_SECONDS": "1",
    "WORKER_HEARTBEAT_TIMEOUT": "4",
    "JOB_HEARTBEAT_SECONDS": "1",
    "JOB_HEARTBEAT_TIMEOUT": "4",
}


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    data_dir: Path
    web: subprocess.Popen
    worker: subprocess.Popen
    http: requests.Session

    def start_worker(self) -> None:
        log = (self.data_dir / "worker.log").open("a")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "playground", "worker", "--loglevel", "INFO",
             "--concurrency", "1", "--hostname", "jobs-test@%h"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def stop_worker(self) -> None:
        stop_process(self.worker, sig=signal.SIGTERM)
        if self.worker.returncode not in (0, None):
            with suppress(ProcessLookupError):  # a killed worker may leave its pool process behind
                os.killpg(self.worker.pid, signal.SIGKILL)

    def pool_pids(self) -> list[int]:
        """The worker's pool processes (the ones that run the jobs)."""
        import psutil

        children = psutil.Process(self.worker.pid).children()
        return [child.pid for child in children if child.status() != psutil.STATUS_ZOMBIE]

    def wait_for_worker(self) -> None:
        alive = lambda: "none connected" not in self.http.get(f"{self.url}/jobs/").text  # noqa: E731
        wait_for(alive, 120, "a live worker")

    def post(self, path: str, data: dict[str, Any] | None = None) -> requests.Response:
        token = self.http.cookies.get("csrftoken")
        return self.http.post(f"{self.url}{path}", data=data or {}, headers={"X-CSRFToken": token})

    def job(self, job_id: int) -> dict[str, Any]:
        response = self.http.get(f"{self.url}/jobs/{job_id}/status.json", timeout=10)
        response.raise_for_status()
        return response.json()

    def page(self, job_id: int) -> str:
        return self.http.get(f"{self.url}/jobs/{job_id}/", timeout=10).text

    def wait(self, job_id: int, predicate, timeout: float, what: str) -> dict[str, Any]:
        try:
            return wait_for(lambda: (j := self.job(job_id)) and predicate(j) and j, timeout, what)
        except AssertionError as exc:
            log = (self.data_dir / "worker.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"{exc}\njob: {self.job(job_id)}\n--- worker log ---\n{log}") from None

    def submit(self, path: str, form: dict[str, Any]) -> int:
        response = self.post(path, form)
        match = re.search(r"/jobs/(\d+)/$", response.url)
        assert match, f"the form was refused: {response.status_code}\n{response.text[-3000:]}"
        return int(match.group(1))


@contextmanager
def jobs_site(data_dir: Path, tiny_model_dir: Path, **env_extra: str) -> Iterator[Stack]:
    """The site and one worker on the tiny model; `env_extra` sets the broker (REDIS_URL) and timeouts."""
    from llmcore.store import ModelStore

    ModelStore(data_dir / "models").import_folder(tiny_model_dir, TINY_NAME, license="MIT")
    env = site_env(data_dir, MODEL_DIR=str(data_dir / "models"), **{**FAST, **env_extra})
    manage(env, "migrate", "--noinput")
    manage(env, "ensure_admin")
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "playground.asgi:application"],
        cwd=ROOT, env=env, stdout=(data_dir / "web.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    s = Stack(f"http://127.0.0.1:{port}", env, data_dir, web, None, requests.Session())
    s.start_worker()
    try:
        wait_for(lambda: s.http.get(f"{s.url}/healthz", timeout=5).ok, 120, "the site", web)
        link = manage(env, "login_link", "--base-url", s.url).strip()
        s.http.get(link)
        s.post(link[len(s.url) :])
        assert "Log out" in s.http.get(f"{s.url}/jobs/").text
        s.wait_for_worker()
        yield s
    finally:
        s.stop_worker()
        # SIGTERM, as docker stops it: Daphne's Twisted reactor leaves SIGINT alone when the process
        # started with SIGINT ignored (a background job of a non-interactive shell, as CI runs), so a
        # Ctrl-C here waited out the 30 s and killed it (7 sites in a CI run: about 3 minutes).
        stop_process(web, sig=signal.SIGTERM)


def lora_form(stack: Stack, steps: int, **extra: Any) -> dict[str, Any]:
    response = stack.post("/jobs/datasets/sample/", {"sample": "pirate-instructions"})
    dataset = int(re.search(r"/datasets/(\d+)/$", response.url).group(1))
    return {"base_model": TINY_NAME, "method": "lora", "dataset": dataset, "steps": steps, "batch_size": 2,
            "max_seq_len": 64, "checkpoint_every": 5, **extra}  # fmt: skip
