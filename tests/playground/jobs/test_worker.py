"""Jobs end to end with real processes: Daphne serving the site, a Celery worker process, the Redis broker.

Driven over HTTP like a user (the forms, Cancel, Resume, the pages); the tiny model keeps it fast. One
site and worker serve the whole module, in order: quantize, a few LoRA steps, cancel (queued and running)
and resume, then SIGKILL in the middle of a job: the worker with its pool process, the pool process alone
(the job restarts, up to JOB_MAX_ATTEMPTS), and the worker's main process alone.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_NAME, redis_available, redis_url_for_tests, require, wait_for
from tests.playground.jobs.sites import Stack, jobs_site, lora_form

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = redis_url_for_tests()
    require(redis_available(url), f"no Redis answers at {url}")
    import redis

    redis.Redis.from_url(url).flushdb()
    with jobs_site(tmp_path_factory.mktemp("jobs-site"), tiny_model_dir, REDIS_URL=url) as s:
        yield s


@pytest.mark.parametrize(
    "method", ["int8_weight", "int8_dynamic", "int4_weight", "bf16", "fp16", "gguf_q8_0"]
)
def test_a_quantize_job_runs_on_the_worker_and_its_result_joins_the_catalog(
    stack: Stack, method: str
) -> None:
    job_id = stack.submit("/jobs/new/quantize/", {"base_model": TINY_NAME, "method": method})
    job = stack.wait(job_id, lambda j: j["status"] not in ("queued", "running"), 300, f"the {method} job")
    assert job["status"] == "succeeded", job["error"]
    assert job["device"] == "cpu"
    report = job["report"]
    assert report["summary"], "every quantize job ends in a report"
    assert report["quantized"]["disk_bytes"] < report["parent"]["disk_bytes"]
    assert 0 <= report["top1_agreement"] <= 1
    assert 1 < report["quantized"]["perplexity"] < float("inf")
    page = stack.http.get(f"{stack.url}/models/{job['output_model']}/").text
    assert f'href="/models/{TINY_NAME}/"' in page, "the catalog page links the parent"
    assert method in page
    assert 'id="report-side-by-side"' in page, "the report is on the catalog page too"
    detail = stack.http.get(f"{stack.url}/jobs/{job_id}/").text
    assert 'id="job-report"' in detail
    assert "every 2s" not in detail, "a finished job stops polling"


def test_a_few_lora_steps_train_and_the_merged_model_joins_the_catalog(stack: Stack) -> None:
    job_id = stack.submit("/jobs/new/finetune/", lora_form(stack, 4, sample_prompts="Say hi", sample_every=2))
    job = stack.wait(job_id, lambda j: j["status"] not in ("queued", "running"), 300, "the LoRA job")
    assert job["status"] == "succeeded", job["error"]
    assert job["step"] == 4
    assert job["total"] == 4
    assert any("loss" in point for point in job["metrics"]), "the loss curve has points"
    checkpoints = stack.data_dir / "jobs" / str(job_id) / "checkpoints"
    assert not checkpoints.exists(), "a finished job frees its disk"
    page = stack.http.get(f"{stack.url}/models/{job['output_model']}/").text
    assert f'href="/models/{TINY_NAME}/"' in page
    assert "lora" in page


@pytest.mark.parametrize(
    ("method", "sample", "extra"),
    [
        ("sft", "pirate-instructions", {}),
        ("prompt_tuning", "pirate-instructions", {"num_virtual_tokens": 4}),
        ("dpo", "helpful-preferences", {}),
        ("distill", "pirate-instructions", {"teacher_model": TINY_NAME, "student_layers": 1}),
    ],
)
def test_every_other_method_trains_on_the_worker_and_joins_the_catalog(
    stack: Stack, method: str, sample: str, extra: dict[str, Any]
) -> None:
    response = stack.post("/jobs/datasets/sample/", {"sample": sample})
    dataset = int(re.search(r"/datasets/(\d+)/$", response.url).group(1))
    form = {"base_model": TINY_NAME, "method": method, "dataset": dataset, "steps": 3, "batch_size": 2,
            "max_seq_len": 64, **extra}  # fmt: skip
    job_id = stack.submit("/jobs/new/finetune/", form)
    job = stack.wait(job_id, lambda j: j["status"] not in ("queued", "running"), 300, f"the {method} job")
    assert job["status"] == "succeeded", job["error"]
    assert job["step"] == 3
    losses = [point["loss"] for point in job["metrics"] if "loss" in point]
    assert len(losses) == 3
    assert all(loss == loss and loss < 100 for loss in losses), losses  # finite: no NaN, no blow-up
    page = stack.http.get(f"{stack.url}/models/{job['output_model']}/").text
    assert f'href="/models/{TINY_NAME}/"' in page
    assert method in page


def test_cancel_queued_and_running_jobs_then_resume_from_the_checkpoint(stack: Stack) -> None:
    running = stack.submit("/jobs/new/finetune/", lora_form(stack, 5000))
    stack.wait(running, lambda j: j["status"] == "running" and j["step"] >= 6, 300, "a few steps")
    queued = stack.submit("/jobs/new/quantize/", {"base_model": TINY_NAME, "method": "bf16"})
    assert stack.job(queued)["status"] == "queued", "the only worker is busy"
    stack.post(f"/jobs/{queued}/cancel/")
    assert stack.job(queued)["status"] == "cancelled", "a queued job is cancelled at once"

    stack.post(f"/jobs/{running}/cancel/")
    job = stack.wait(running, lambda j: j["status"] != "running", 60, "the running job to stop")
    assert job["status"] == "cancelled"
    stopped_at = job["step"]
    assert any((stack.data_dir / "jobs" / str(running) / "checkpoints").iterdir()), "it saved before stopping"
    page = stack.http.get(f"{stack.url}/jobs/{running}/").text
    assert "Resume from checkpoint" in page

    stack.post(f"/jobs/{running}/resume/")
    stack.wait(running, lambda j: j["status"] == "running" and j["step"] > stopped_at, 300, "the resumed run")
    log = stack.http.get(f"{stack.url}/jobs/{running}/").text
    assert "Resuming from checkpoint-" in log
    stack.post(f"/jobs/{running}/cancel/")
    stack.wait(running, lambda j: j["status"] == "cancelled", 60, "the second cancel")
    assert stack.job(queued)["status"] == "cancelled", "its message reached the worker and did nothing"
    assert stack.job(queued)["output_model"] == ""


def test_a_worker_killed_mid_job_leaves_the_job_failed_worker_lost(stack: Stack) -> None:
    job_id = stack.submit("/jobs/new/finetune/", lora_form(stack, 5000))
    stack.wait(job_id, lambda j: j["status"] == "running" and j["step"] >= 1, 300, "the job to run")
    os.killpg(stack.worker.pid, signal.SIGKILL)  # the worker and its pool child, with no goodbye
    stack.worker.wait()
    time.sleep(6)  # past the heartbeat timeout (4 s here): the worker is lost by now
    assert stack.http.get(f"{stack.url}/jobs/").ok
    assert stack.page(job_id)
    assert stack.job(job_id)["status"] == "running", "a page view never changes a job (a GET writes nothing)"
    # A worker that starts, and every worker's heartbeat, checks for lost workers: stale job and worker
    # heartbeats (4 s here). The killed one's unacked message must not revive the job either.
    stack.start_worker()
    job = stack.wait(job_id, lambda j: j["status"] != "running", 60, "the job to be marked lost")
    assert job["status"] == "failed"
    assert job["error"].startswith("Worker lost"), job
    assert not stack.http.get(f"{stack.url}/models/{TINY_NAME}-lora-").ok
    stack.post(f"/jobs/{job_id}/resume/")
    job = stack.wait(job_id, lambda j: j["status"] == "running" and j["attempt"] >= 1, 300, "the resumed job")
    stack.post(f"/jobs/{job_id}/cancel/")
    assert stack.wait(job_id, lambda j: j["status"] != "running", 60, "the cancel")["status"] == "cancelled"


def test_a_killed_pool_process_restarts_the_job_and_a_second_kill_fails_it_worker_lost(stack: Stack) -> None:
    job_id = stack.submit("/jobs/new/finetune/", lora_form(stack, 5000))
    stack.wait(job_id, lambda j: j["status"] == "running" and j["step"] >= 1, 300, "the job to run")
    os.kill(stack.pool_pids()[0], signal.SIGKILL)  # the process running the job; the worker lives on
    # Late acks and reject-on-worker-lost put the message back; a new pool process restarts the job.
    restarted = lambda j: j["attempt"] == 2 and "attempt 2 on jobs-test@" in stack.page(job_id)  # noqa: E731
    job = stack.wait(job_id, restarted, 300, "the job to restart")
    assert job["status"] == "running"
    assert stack.worker.poll() is None

    os.kill(stack.pool_pids()[0], signal.SIGKILL)  # JOB_MAX_ATTEMPTS (2) is reached: no third start
    job = stack.wait(job_id, lambda j: j["status"] != "running", 120, "the job to be marked lost")
    assert job["status"] == "failed"
    assert job["error"].startswith("Worker lost"), job
    stack.post(f"/jobs/{job_id}/resume/")
    job = stack.wait(job_id, lambda j: j["status"] == "running" and j["step"] >= 1, 300, "the resumed job")
    assert job["attempt"] == 1, "a resumed job counts its attempts afresh"
    stack.post(f"/jobs/{job_id}/cancel/")
    assert stack.wait(job_id, lambda j: j["status"] != "running", 60, "the cancel")["status"] == "cancelled"


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_worker_main_process_takes_its_pool_with_it_and_the_restarted_worker_marks_the_job_lost(
    stack: Stack,
) -> None:
    job_id = stack.submit("/jobs/new/finetune/", lora_form(stack, 5000))
    stack.wait(job_id, lambda j: j["status"] == "running" and j["step"] >= 6, 300, "a checkpoint at step 5")
    pool = stack.pool_pids()
    os.kill(stack.worker.pid, signal.SIGKILL)  # the main process only
    stack.worker.wait()
    # Celery gives its pool processes a parent-death signal: nothing goes on running the job unseen.
    wait_for(lambda: not any(alive(pid) for pid in pool), 60, "the pool process to die with its worker")
    assert stack.job(job_id)["status"] == "running", "nobody has looked yet"

    stack.start_worker()  # the same worker name: what it was running when it stopped is lost
    job = stack.wait(job_id, lambda j: j["status"] != "running", 120, "the restarted worker's check")
    assert job["status"] == "failed"
    assert job["error"].startswith("Worker lost"), job
    assert "from its last checkpoint" in job["error"]
    stopped_at = job["step"]
    stack.post(f"/jobs/{job_id}/resume/")
    stack.wait(job_id, lambda j: j["status"] == "running" and j["step"] > stopped_at, 300, "the resumed run")
    assert "Resuming from checkpoint-" in stack.page(job_id)
    stack.post(f"/jobs/{job_id}/cancel/")
    assert stack.wait(job_id, lambda j: j["status"] != "running", 60, "the cancel")["status"] == "cancelled"
