"""A real Celery worker process takes a task through each broker: the embedded one and Redis."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from tests.conftest import (
    ROOT,
    manage,
    redis_available,
    redis_url_for_tests,
    require,
    site_env,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration


def broker_env(kind: str, data_dir: Path) -> dict[str, str]:
    if kind == "redis":
        url = redis_url_for_tests()
        require(redis_available(url), f"no Redis answers at {url}")
        import redis

        redis.Redis.from_url(url).flushdb()  # a test database: leftovers from an earlier run must not count
        return site_env(data_dir, REDIS_URL=url)
    return site_env(data_dir)


def client_for(env: dict[str, str], data_dir: Path) -> Celery:
    if "REDIS_URL" in env:
        return Celery(broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    return Celery(
        broker=f"sqla+sqlite:///{data_dir / 'celery-broker.sqlite3'}",
        backend=f"db+sqlite:///{data_dir / 'celery-results.sqlite3'}",
    )


def heartbeat_rows(data_dir: Path) -> list[tuple[str, str, list[str]]]:
    with sqlite3.connect(data_dir / "playground.sqlite3") as db:
        rows = db.execute("SELECT hostname, device, queues FROM core_workerheartbeat").fetchall()
    return [(h, d, json.loads(q)) for h, d, q in rows]


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_a_real_worker_runs_a_task_and_reports_its_device(broker: str, tmp_path: Path) -> None:
    env = broker_env(broker, tmp_path)
    manage(env, "migrate", "--noinput")
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "playground",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "1",
            "--hostname",
            f"test-{broker}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        rows = wait_for(lambda: heartbeat_rows(tmp_path), 90, "the worker's heartbeat", worker)
        hostname, device, queues = rows[0]
        assert hostname.startswith(f"test-{broker}@")
        assert device == "cpu"
        assert queues == ["cpu"], "a worker without a GPU must not take jobs from the gpu queue"
        client = client_for(env, tmp_path)
        result = client.send_task("core.ping_task", args=["hello"], queue="cpu")
        answer = result.get(timeout=60)
        assert answer["echo"] == "hello"
        assert answer["device"] == "cpu"
        assert int(answer["pid"]) != worker.pid  # it ran in the worker's pool, not in this test
    finally:
        code = stop_process(worker, sig=15)
        log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert heartbeat_rows(tmp_path) == [], "a worker that shuts down cleanly removes its heartbeat"
