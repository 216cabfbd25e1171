"""Per-key limits: requests per minute, concurrent streams and tokens per day, each a 429 with Retry-After,
on the database's counters and on Redis's (the `backend` fixture runs each test on both)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async

from playground.apikeys import counters, services
from playground.apikeys.models import ApiKey, ApiKeyUsage
from playground.core.services import error_status

pytestmark = pytest.mark.django_db


def limited(key: ApiKey, *, stream: bool = False) -> services.RateLimited:
    with pytest.raises(services.RateLimited) as refused:
        services.admit(key, stream=stream)
    assert error_status(refused.value) == 429
    return refused.value


def test_requests_over_the_per_minute_limit_wait_for_the_next_minute(backend, key, clock) -> None:
    key.requests_per_minute = 3
    for _ in range(3):
        with services.admit(key, stream=False):
            pass
    refused = limited(key)
    assert str(refused) == "Limit reached: 3 requests per minute for this key."
    assert refused.retry_after == 45  # the clock stands 15 s into its minute: a fixed window

    clock[0] += 45
    with services.admit(key, stream=False):
        pass


def test_streams_over_the_limit_are_refused_until_one_ends(backend, key, clock) -> None:
    key.concurrent_streams = 2
    first = services.admit(key, stream=True)
    with services.admit(key, stream=True):
        refused = limited(key, stream=True)
        assert str(refused) == "Limit reached: 2 concurrent streams for this key."
        assert refused.retry_after >= 1
        with services.admit(key, stream=False):  # a request that does not stream holds no slot
            pass
    with services.admit(key, stream=True):  # the one that ended gave its slot back
        limited(key, stream=True)
    first.release()


def test_a_stream_that_fails_gives_its_slot_back(backend, key, clock) -> None:
    key.concurrent_streams = 1
    with pytest.raises(RuntimeError), services.admit(key, stream=True):
        raise RuntimeError("the engine broke mid-stream")
    with services.admit(key, stream=True):
        limited(key, stream=True)


def test_an_async_stream_cancelled_by_a_disconnect_gives_its_slot_back(backend, key, clock) -> None:
    key.concurrent_streams = 1

    async def stream_until_cancelled(started: asyncio.Event) -> None:
        admission = await sync_to_async(services.admit)(key, stream=True)
        async with admission:
            started.set()
            await asyncio.sleep(60)

    async def client_goes_away() -> None:
        started = asyncio.Event()
        task = asyncio.ensure_future(stream_until_cancelled(started))
        await started.wait()
        with pytest.raises(services.RateLimited):
            await sync_to_async(services.admit)(key, stream=True)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async_to_sync(client_goes_away)()
    with services.admit(key, stream=True):
        pass


def test_a_slot_whose_process_died_lapses_after_its_lease(backend, key, clock) -> None:
    key.concurrent_streams = 1
    held = services.admit(key, stream=True)  # never released: its process was killed
    limited(key, stream=True)
    clock[0] += counters.STREAM_LEASE_SECONDS + 1
    with services.admit(key, stream=True):
        pass
    del held


@pytest.mark.django_db(transaction=True)  # the slot is given back from another thread's connection
def test_a_stream_never_started_gives_its_slot_back_when_dropped(backend, key, clock) -> None:
    """A client gone before its stream's first byte: the response's generator never ran, so the
    Admission it held was never entered; dropping it gives the slot back (on a loop: from a thread)."""
    key.concurrent_streams = 1
    services.admit(key, stream=True)  # dropped at once, never entered
    with services.admit(key, stream=True):
        limited(key, stream=True)

    held = [services.admit(key, stream=True)]

    async def dropped_on_a_loop() -> None:
        held.clear()  # its last reference, dropped while the loop runs (as a view's would be)

    asyncio.run(dropped_on_a_loop())
    # The loop may not use the database (the database counters would fail there): a thread gives it back.
    for thread in [t for t in threading.enumerate() if t.name == "stream-slot"]:
        thread.join(10)
    with services.admit(key, stream=True):
        limited(key, stream=True)


def test_a_request_refused_per_minute_keeps_no_stream_slot(backend, key, clock) -> None:
    key.requests_per_minute, key.concurrent_streams = 1, 1
    with services.admit(key, stream=False):
        pass
    limited(key, stream=True)  # over the minute's limit: the slot it took is given back
    clock[0] += 60
    with services.admit(key, stream=True):
        pass


def test_limits_are_per_key(backend, key, user, clock) -> None:
    other, _ = services.create_key(user, "other")
    key.concurrent_streams = other.concurrent_streams = 1
    with services.admit(key, stream=True), services.admit(other, stream=True):
        limited(key, stream=True)


def test_tokens_over_the_day_limit_wait_for_tomorrow(backend, key, clock) -> None:
    key.tokens_per_day = 100
    with services.admit(key, stream=False) as admission:
        admission.record("tiny-llama", prompt_tokens=60, completion_tokens=40)
    refused = limited(key)
    assert str(refused) == "Limit reached: 100 tokens per day for this key (100 used today)."
    assert 1 <= refused.retry_after <= 24 * 3600
    assert abs(refused.retry_after - services.seconds_to_tomorrow()) <= 2  # until midnight in TIME_ZONE


def test_usage_adds_up_per_key_model_and_day(key, user) -> None:
    other, _ = services.create_key(user, "other")
    with services.admit(key, stream=True) as admission:
        admission.record("tiny-llama", 10, 1)
        admission.record("tiny-llama", 0, 4)  # a stream recording later tokens: still one request
    with services.admit(key, stream=False) as admission:
        admission.record("tiny-llama", 5, 5)
    with services.admit(key, stream=False) as admission:
        admission.record("smollm2", 7, 3)
    with services.admit(other, stream=False) as admission:
        admission.record("tiny-llama", 100, 100)
    rows = {
        (row.key_id, row.model_name): (row.day, row.requests, row.prompt_tokens, row.completion_tokens)
        for row in ApiKeyUsage.objects.all()
    }
    today = services.today()
    assert rows == {
        (key.pk, "tiny-llama"): (today, 2, 15, 10),
        (key.pk, "smollm2"): (today, 1, 7, 3),
        (other.pk, "tiny-llama"): (today, 1, 100, 100),
    }
    assert services.tokens_today(key) == 35


def test_the_redis_counters_live_in_redis_for_every_process(redis_backend: str, key, clock) -> None:
    with services.admit(key, stream=True):
        # What another web process sees: a new connection to the same Redis.
        other = redis.Redis.from_url(redis_backend)
        assert other.zcard(counters.RedisCounters.streams(key)) == 1
        minute = f"{counters.REDIS_PREFIX}:{key.prefix}:minute:{int(clock[0] // 60)}"
        assert int(other.get(minute)) == 1
    assert other.zcard(counters.RedisCounters.streams(key)) == 0


def test_a_redis_that_does_not_answer_is_a_503(key, settings, clock) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with pytest.raises(counters.LimiterUnavailable) as unavailable:
        services.admit(key, stream=False)
    assert error_status(unavailable.value) == 503
    assert "try again" in str(unavailable.value)
