"""The short-lived counters behind a key's limits: requests in the current minute and streams in flight.

They must agree across every web process, so they live in Redis when REDIS_URL is set and in the database
otherwise (one machine, SQLite or PostgreSQL). Both backends answer the same two questions:

- Requests per minute use a fixed window: the count of the current wall-clock minute. Simple and cheap
  (one INCR); a burst straddling a minute boundary can reach twice the limit, which is the usual price.
  A refused request counts too, so hammering does not open the window early.
- Concurrent streams are slots with a lease: a slot is taken before a stream starts and given back when
  it ends. A process killed mid-stream cannot give its slot back, so every slot lapses after
  STREAM_LEASE_SECONDS, longer than any stream the site writes (CHAT_MAX_NEW_TOKENS at CPU speed).

Tokens per day are not here: they come from the usage rows in the database (services), which the page
shows anyway.
"""

from __future__ import annotations

import contextlib
import functools
import math
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol

import redis
from django.conf import settings
from django.db import transaction

from playground.apikeys.models import ApiKey, RequestWindow, StreamSlot
from playground.core.services import PlaygroundError

WINDOW_SECONDS = 60
STREAM_LEASE_SECONDS = 3600
REDIS_PREFIX = "playground:apikeys"


class LimiterUnavailable(PlaygroundError):
    status = 503


def seconds_left_in_window(now: float) -> int:
    return max(1, math.ceil(WINDOW_SECONDS - now % WINDOW_SECONDS))


class Counters(Protocol):
    def count_request(self, key: ApiKey, now: float) -> int:
        """Count one request in the current minute; the count so far, this one included."""

    def take_stream(self, key: ApiKey, limit: int, now: float) -> str | None:
        """A slot's token, or None when `limit` streams of the key are already in flight."""

    def give_back_stream(self, key: ApiKey, token: str) -> None: ...


# --- Redis -------------------------------------------------------------------------------------------
# Drop lapsed slots, then take one if there is room: one script, so two processes cannot both take the
# last slot. KEYS[1] a sorted set of slot tokens scored by when they lapse.
TAKE_STREAM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1] + ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


@functools.cache
def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


class RedisCounters:
    def __init__(self, url: str) -> None:
        self.client = redis_client(url)

    def count_request(self, key: ApiKey, now: float) -> int:
        name = f"{REDIS_PREFIX}:{key.prefix}:minute:{int(now // WINDOW_SECONDS)}"
        with redis_errors_as_503():
            pipe = self.client.pipeline()
            pipe.incr(name)
            pipe.expire(name, 2 * WINDOW_SECONDS)
            count, _ = pipe.execute()
        return int(count)

    def take_stream(self, key: ApiKey, limit: int, now: float) -> str | None:
        token = secrets.token_hex(16)
        with redis_errors_as_503():
            taken = self.client.eval(
                TAKE_STREAM, 1, self.streams(key), now, STREAM_LEASE_SECONDS, limit, token
            )
        return token if taken else None

    def give_back_stream(self, key: ApiKey, token: str) -> None:
        with redis_errors_as_503():
            self.client.zrem(self.streams(key), token)

    @staticmethod
    def streams(key: ApiKey) -> str:
        return f"{REDIS_PREFIX}:{key.prefix}:streams"


@contextlib.contextmanager
def redis_errors_as_503() -> Iterator[None]:
    """A Redis that does not answer is a 503 with a sentence, never a 500."""
    try:
        yield
    except redis.RedisError as exc:
        raise LimiterUnavailable(
            "API limits cannot be checked right now (Redis does not answer); try again."
        ) from exc


# --- the database ------------------------------------------------------------------------------------
class DatabaseCounters:
    """Each change runs in a transaction that first locks the key's row (PostgreSQL: SELECT ... FOR UPDATE;
    SQLite: the settings' IMMEDIATE transactions take the write lock at BEGIN), so a count and the write
    that follows it cannot interleave with another process's."""

    def count_request(self, key: ApiKey, now: float) -> int:
        started = moment(now - now % WINDOW_SECONDS)
        with transaction.atomic():
            lock(key)
            RequestWindow.objects.filter(key=key, started__lt=started).delete()
            window, _ = RequestWindow.objects.get_or_create(key=key, started=started)
            window.count += 1
            window.save(update_fields=["count"])
        return window.count

    def take_stream(self, key: ApiKey, limit: int, now: float) -> str | None:
        token = secrets.token_hex(16)
        with transaction.atomic():
            lock(key)
            StreamSlot.objects.filter(key=key, expires__lte=moment(now)).delete()
            if StreamSlot.objects.filter(key=key).count() >= limit:
                return None
            StreamSlot.objects.create(key=key, token=token, expires=moment(now + STREAM_LEASE_SECONDS))
        return token

    def give_back_stream(self, key: ApiKey, token: str) -> None:
        StreamSlot.objects.filter(key=key, token=token).delete()


def lock(key: ApiKey) -> None:
    list(ApiKey.objects.select_for_update().filter(pk=key.pk).values_list("pk", flat=True))


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def counters() -> Counters:
    """Redis when the site has one (every process shares it), else the database."""
    url = settings.REDIS_URL
    return RedisCounters(url) if url else DatabaseCounters()


def clock() -> float:
    return time.time()
