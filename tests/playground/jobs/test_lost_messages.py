"""A queued job whose broker message is lost is sent again, or failed with the reason, never stuck.

First the rule against the database and a real embedded broker (kombu's SQLite transport): a job waits
while no worker is alive or while its message waits in the broker behind a busy worker. Then with real
processes: a worker busy with a long fine-tune, a quantize job queued behind it, its message deleted
from the broker (Redis and the embedded one), and a Redis server restarted without persistence.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from kombu import Connection

from playground.jobs.models import Job
from playground.jobs.services.jobs import note_received, resend_lost_messages, resume_job
from playground.jobs.services.runner import claim
from tests.conftest import (
    TINY_NAME,
    free_port,
    redis_available,
    redis_url_for_tests,
    require,
    stop_process,
    wait_for,
)
from tests.playground.jobs.conftest import worker_row
from tests.playground.jobs.sites import Stack, jobs_site, lora_form

OLD_ID = "a" * 32


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Connection]:
    """A real embedded broker of this test's own (the one the site uses without REDIS_URL)."""
    connection = Connection(f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}")
    yield connection
    connection.release()


@pytest.fixture
def fast(settings):
    settings.JOB_QUEUE_TIMEOUT = 5
    settings.JOB_MAX_RESENDS = 2
    return settings


def queued_job(owner, waited: float = 60, queue: str = "cpu", **fields) -> Job:
    """A job whose message was sent `waited` seconds ago and that no worker has claimed."""
    return Job.objects.create(
        owner=owner, kind="quantize", method="bf16", base_model=TINY_NAME, output_name=f"out-{waited}",
        queue=queue, task_id=OLD_ID, message_seen=timezone.now() - timedelta(seconds=waited), **fields,
    )  # fmt: skip


def put_message(broker: Connection, queue: str) -> None:
    with broker.SimpleQueue(queue) as q:
        q.put({"task": "jobs.run_job_task"})


def unchanged(job: Job) -> bool:
    job.refresh_from_db()
    return job.status == Job.Status.QUEUED and job.task_id == OLD_ID and job.resends == 0


@pytest.mark.django_db
def test_a_job_waits_in_the_queue_while_no_worker_is_alive(user, fast, broker: Connection) -> None:
    job = queued_job(user, waited=3600)
    worker_row("gone@a", "cpu", ["cpu"], age_seconds=600)  # stopped long ago
    assert resend_lost_messages(broker) == []
    assert unchanged(job), "with no worker at all a job waits until one starts"


@pytest.mark.django_db
def test_a_job_waits_on_a_queue_that_no_live_worker_takes(user, fast, broker: Connection) -> None:
    job = queued_job(user, queue="gpu")
    worker_row("cpu@a", "cpu", ["cpu"])
    assert resend_lost_messages(broker) == []
    assert unchanged(job)


@pytest.mark.django_db
def test_a_job_waits_while_its_message_waits_in_the_broker_behind_a_busy_worker(
    user, fast, broker: Connection
) -> None:
    worker_row("busy@a", "cpu", ["cpu"])
    Job.objects.create(owner=user, kind="finetune", method="lora", base_model=TINY_NAME, output_name="long",
                       status=Job.Status.RUNNING, worker="busy@a", heartbeat=timezone.now())  # fmt: skip
    job = queued_job(user, waited=3600)
    put_message(broker, "cpu")
    assert resend_lost_messages(broker) == []
    assert unchanged(job), "a message waiting in the broker is not lost"


@pytest.mark.django_db
def test_a_recently_sent_message_is_not_sent_again(user, fast, broker: Connection) -> None:
    job = queued_job(user, waited=1)
    worker_row("idle@a", "cpu", ["cpu"])
    assert resend_lost_messages(broker) == []
    assert unchanged(job)


@pytest.mark.django_db
def test_a_message_a_worker_received_is_not_lost_however_long_the_job_waited(
    user, fast, broker: Connection
) -> None:
    job = queued_job(user, waited=3600)
    worker_row("idle@a", "cpu", ["cpu"])
    note_received(job.pk, "another message")
    assert resend_lost_messages(broker) != [], "only the message the row expects counts"
    job = queued_job(user, waited=3600)
    note_received(job.pk, OLD_ID)  # the worker's main process has it; its pool claims it next
    assert resend_lost_messages(broker) == []
    assert unchanged(job)


@pytest.mark.django_db
def test_nothing_is_decided_while_the_broker_does_not_answer(user, fast) -> None:
    job = queued_job(user, waited=3600)
    worker_row("idle@a", "cpu", ["cpu"])
    down = Connection(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=2)
    assert resend_lost_messages(down) == []
    assert unchanged(job)


@pytest.mark.django_db
def test_a_lost_message_is_sent_again_and_only_the_new_one_may_run_the_job(
    user, fast, broker: Connection, django_capture_on_commit_callbacks
) -> None:
    job = queued_job(user, waited=60)
    worker_row("idle@a", "cpu", ["cpu"])
    with django_capture_on_commit_callbacks() as sent:
        assert resend_lost_messages(broker) == [job.pk]
    assert len(sent) == 1, "the new message is sent once the row is committed"
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert job.resends == 1
    assert job.task_id != OLD_ID
    assert "sent it again (1 of 2)" in job.log_tail[-1]
    assert resend_lost_messages(broker) == [], "the new message has its own JOB_QUEUE_TIMEOUT"
    assert claim(job.pk, OLD_ID, "late@a", "cpu") is None, "a late original does not run it"
    running = claim(job.pk, job.task_id, "idle@a", "cpu")
    assert running is not None
    assert running.status == Job.Status.RUNNING


@pytest.mark.django_db
def test_a_job_sent_again_too_often_fails_with_the_reason_and_can_be_resumed(
    user, client_in, fast, broker: Connection, model_dir, django_capture_on_commit_callbacks
) -> None:
    job = queued_job(user, waited=60, resends=2)
    worker_row("idle@a", "cpu", ["cpu"])
    assert resend_lost_messages(broker) == [job.pk]
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("No worker picked this job up within 5 s"), job.error
    assert "Resume re-queues it" in job.error
    page = client_in.get(f"/jobs/{job.pk}/").content.decode()
    assert "No worker picked this job up within 5 s" in page
    assert ">Resume</button>" in page
    with django_capture_on_commit_callbacks():
        resume_job(job)
    job.refresh_from_db()
    assert (job.status, job.resends, job.error) == (Job.Status.QUEUED, 0, "")


# --- with real processes ----------------------------------------------------------------------------
QUEUE_TIMEOUT = 3  # seconds without a worker receiving a queued job's message
LOST = {"JOB_QUEUE_TIMEOUT": str(QUEUE_TIMEOUT), "JOB_MAX_RESENDS": "1"}


def broker_url(stack: Stack) -> str:
    return stack.env.get("REDIS_URL") or f"sqla+sqlite:///{stack.data_dir / 'celery-broker.sqlite3'}"


def lose_messages(stack: Stack, queue: str = "cpu") -> None:
    """Delete every message waiting in the broker's queue, as a broker restarted without persistence does."""
    with Connection(broker_url(stack)) as connection:
        connection.default_channel.queue_purge(queue)


def waiting_messages(stack: Stack, queue: str = "cpu") -> int:
    with Connection(broker_url(stack)) as connection:
        return int(connection.default_channel.queue_declare(queue=queue).message_count)


def quantize(stack: Stack) -> int:
    return stack.submit("/jobs/new/quantize/", {"base_model": TINY_NAME, "method": "bf16"})


def finished(job: dict) -> bool:
    return job["status"] not in ("queued", "running")


@pytest.fixture(params=["redis", "embedded"])
def lossy_site(request, tiny_model_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    env = dict(LOST)
    if request.param == "redis":
        url = redis_url_for_tests()
        require(redis_available(url), f"no Redis answers at {url}")
        import redis

        redis.Redis.from_url(url).flushdb()
        env["REDIS_URL"] = url
    with jobs_site(tmp_path, tiny_model_dir, **env) as stack:
        yield stack


@pytest.mark.integration
def test_a_job_whose_message_the_broker_lost_is_sent_again_and_runs(lossy_site: Stack) -> None:
    stack = lossy_site
    long = stack.submit("/jobs/new/finetune/", lora_form(stack, 5000))
    stack.wait(long, lambda j: j["status"] == "running" and j["step"] >= 1, 300, "the long job to run")

    waiting = quantize(stack)
    time.sleep(QUEUE_TIMEOUT + 3)  # past the timeout, with heartbeats checking every second
    job = stack.job(waiting)
    assert (job["status"], job["resends"]) == ("queued", 0), "it waits in the broker behind the busy worker"

    lose_messages(stack)
    job = stack.wait(waiting, lambda j: j["resends"] == 1, 60, "the lost message to be sent again")
    assert job["status"] == "queued", "sent again, it waits behind the busy worker like before"
    assert "sent it again (1 of 1)" in stack.page(waiting)

    stack.post(f"/jobs/{long}/cancel/")
    job = stack.wait(waiting, finished, 300, "the re-sent job to run")
    assert job["status"] == "succeeded", job["error"]
    assert job["resends"] == 1
    assert stack.job(long)["status"] == "cancelled"


@pytest.mark.integration
def test_a_job_whose_messages_keep_getting_lost_fails_with_the_reason_and_resume_runs_it(
    lossy_site: Stack,
) -> None:
    stack = lossy_site
    long = stack.submit("/jobs/new/finetune/", lora_form(stack, 5000))
    stack.wait(long, lambda j: j["status"] == "running" and j["step"] >= 1, 300, "the long job to run")
    waiting = quantize(stack)
    lose_messages(stack)
    stack.wait(waiting, lambda j: j["resends"] == 1, 60, "the lost message to be sent again")
    wait_for(lambda: waiting_messages(stack) == 1, 30, "the new message in the broker")  # sent after commit
    lose_messages(stack)  # lost again: JOB_MAX_RESENDS is 1 here
    job = stack.wait(waiting, lambda j: j["status"] != "queued", 60, "the job to be failed")
    assert job["status"] == "failed"
    assert job["error"].startswith(f"No worker picked this job up within {QUEUE_TIMEOUT} s"), job["error"]
    page = stack.page(waiting)
    assert "Resume re-queues it" in page
    assert ">Resume</button>" in page

    stack.post(f"/jobs/{long}/cancel/")
    stack.wait(long, finished, 60, "the long job to stop")
    stack.post(f"/jobs/{waiting}/resume/")
    job = stack.wait(waiting, finished, 300, "the resumed job")
    assert job["status"] == "succeeded", job["error"]
    assert job["resends"] == 0


# --- a Redis server restarted without persistence ---------------------------------------------------
class RedisServer:
    """A redis-server of the test's own on a free port, without persistence (never the one on 6379)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", str(self.folder)],
            stdout=(self.folder / "redis.log").open("a"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(lambda: redis_available(self.url), 30, "the test's redis-server", self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, sig=15)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.integration
def test_a_job_queued_when_redis_restarts_without_persistence_still_runs(
    own_redis: RedisServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with jobs_site(tmp_path / "site", tiny_model_dir, REDIS_URL=own_redis.url, **LOST) as stack:
        long = stack.submit("/jobs/new/finetune/", lora_form(stack, 5000))
        stack.wait(long, lambda j: j["status"] == "running" and j["step"] >= 1, 300, "the long job to run")
        waiting = quantize(stack)
        import redis

        assert redis.Redis.from_url(own_redis.url).llen("cpu") == 1, "its message waits in Redis"
        own_redis.stop()  # everything Redis held is gone
        own_redis.start()
        assert redis.Redis.from_url(own_redis.url).llen("cpu") == 0

        stack.post(f"/jobs/{long}/cancel/")
        stack.wait(long, finished, 120, "the long job to stop")
        job = stack.wait(waiting, finished, 300, "the job queued before the restart")
        assert job["status"] == "succeeded", job["error"]
        assert job["resends"] == 1, "it ran from the message sent again"
