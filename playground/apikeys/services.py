"""API keys: create, authenticate, revoke; the per-key limits and the usage they are measured by.

The /v1 API calls three things, in this order:

    key = authenticate(request)                  # None: no bearer header (use the session instead)
    with admit(key, stream=True) as admission:   # or `async with`; raises RateLimited (429)
        ...                                      # write the response
        admission.record(model, prompt_tokens, completion_tokens)

From async code, call authenticate, admit and record through asgiref's sync_to_async (they use the
database), or use `await admission.arecord(...)`; `async with` gives the stream slot back by itself.
Enter the context as soon as admit returns: a slot is given back on exit. One never entered (a client
gone before its stream's first byte, when the response's generator never started) is given back when the
Admission is collected; only a process that dies holds its slots until their lease lapses
(counters.STREAM_LEASE_SECONDS).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
import string
import threading
import weakref
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Self

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, connections, transaction
from django.db.models import F, QuerySet, Sum
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac

from playground.apikeys import counters
from playground.apikeys.models import ApiKey, ApiKeyUsage
from playground.core.services import PlaygroundError

logger = logging.getLogger(__name__)

SECRET_START = "pg-"
PREFIX_LENGTH = 8  # characters of the secret after "pg-" kept in clear, to find its row and to show
SECRET_BYTES = 32  # 256 random bits, 43 URL-safe characters
SECRET_LENGTH = len(SECRET_START) + math.ceil(SECRET_BYTES * 4 / 3)
SECRET_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_")
HASH_SALT = "playground.apikeys.secret"
# last_used is written when it is older than this: a busy key costs one UPDATE per interval, not one per
# request, and the page still says when a key was last used to within a few seconds.
LAST_USED_EVERY = timedelta(seconds=10)
USAGE_DAYS = 30  # the page shows each key's usage over this many days


class ApiKeyRefused(PlaygroundError):
    """A bearer credential that is malformed, unknown, revoked or whose owner cannot log in. One sentence
    for all of them, so a caller learns nothing about which keys exist."""

    status = 401

    def __init__(self, message: str = "Invalid API key.") -> None:
        super().__init__(message)


class RateLimited(PlaygroundError):
    """A limit of the key is reached; `retry_after` is the whole seconds until it may be tried again
    (the Retry-After header)."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


# --- keys --------------------------------------------------------------------------------------------
def hash_secret(secret: str) -> str:
    """HMAC-SHA256 of the secret, keyed with SECRET_KEY.

    A password hash (PBKDF2, argon2) is slow on purpose, because passwords are guessable and a stolen
    hash must be expensive to test guesses against. An API key is 256 random bits: no guess can succeed,
    so slowness would only add tens of milliseconds to every API request. Keying the hash with
    SECRET_KEY means a copy of the database alone cannot even check a candidate secret. (Changing
    SECRET_KEY therefore invalidates every key.)"""
    return salted_hmac(HASH_SALT, secret, algorithm="sha256").hexdigest()


def create_key(owner: User, name: str) -> tuple[ApiKey, str]:
    """A new key and its secret. The secret exists only in the return value: show it once."""
    for _ in range(5):
        secret = SECRET_START + secrets.token_urlsafe(SECRET_BYTES)
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    owner=owner,
                    name=name.strip(),
                    prefix=secret[len(SECRET_START) :][:PREFIX_LENGTH],
                    secret_hash=hash_secret(secret),
                )
        except IntegrityError:  # the same 48-bit prefix as an existing key: draw again
            continue
        return key, secret
    raise PlaygroundError("Could not make a new key; try again.", status=503)


def authenticate(request: HttpRequest) -> ApiKey | None:
    """The key sent as `Authorization: Bearer <secret>`; None when the request sends no bearer header.
    Raises ApiKeyRefused for a malformed, unknown or revoked key or an inactive owner."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    secret = secret.strip()
    if not well_formed(secret):
        raise ApiKeyRefused()
    prefix = secret[len(SECRET_START) :][:PREFIX_LENGTH]
    key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
    expected = key.secret_hash if key is not None else hash_secret("")
    # Constant-time, so response times say nothing about how much of a guessed hash was right.
    matches = hmac.compare_digest(expected.encode(), hash_secret(secret).encode())
    if key is None or not matches or key.revoked or not key.owner.is_active:
        raise ApiKeyRefused()
    touch(key)
    return key


def well_formed(secret: str) -> bool:
    return (
        len(secret) == SECRET_LENGTH
        and secret.startswith(SECRET_START)
        and SECRET_ALPHABET.issuperset(secret[len(SECRET_START) :])
    )


def touch(key: ApiKey) -> None:
    now = timezone.now()
    if key.last_used is None or now - key.last_used >= LAST_USED_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used=now)
        key.last_used = now


def keys_of(user: User | AnonymousUser) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(owner_id=user.pk)


def every_key() -> QuerySet[ApiKey]:
    """Every user's keys, for an admin."""
    return ApiKey.objects.select_related("owner", "revoked_by")


def key_for(user: User | AnonymousUser, key_id: int) -> ApiKey:
    """The user's own key, or any key for an admin; 404 otherwise, as if it did not exist."""
    keys = every_key() if getattr(user, "is_staff", False) else keys_of(user)
    key = keys.filter(pk=key_id).first()
    if key is None:
        raise Http404("No such key.")
    return key


def revoke_key(key: ApiKey, by: User) -> None:
    """From now on the key authenticates nothing; its usage stays on the page."""
    if key.revoked_at is None:
        key.revoked_at, key.revoked_by = timezone.now(), by
        key.save(update_fields=["revoked_at", "revoked_by"])


# --- limits ------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Admission:
    """One admitted request. As a context manager (`with` or `async with`) it gives the stream slot back
    on exit, whatever ended the response: its end, an error, a client that went away."""

    key: ApiKey
    stream_token: str | None = None
    recorded: bool = field(default=False, init=False)
    _unreleased: weakref.finalize | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.stream_token is not None:  # given back when collected unless released first
            self._unreleased = weakref.finalize(self, give_back_unreleased, self.key, self.stream_token)

    def record(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Add the request's tokens to the key's usage of `model` today. The first call also counts the
        request; a stream may call it again for tokens written later."""
        requests = 0 if self.recorded else 1
        add_usage(self.key, model, int(prompt_tokens), int(completion_tokens), requests)
        self.recorded = True

    async def arecord(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        await sync_to_async(self.record)(model, prompt_tokens, completion_tokens)

    def release(self) -> None:
        """Give the stream slot back (once; later calls do nothing)."""
        token, self.stream_token = self.stream_token, None
        if self._unreleased is not None:
            self._unreleased.detach()
        if token is not None:
            counters.counters().give_back_stream(self.key, token)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Shielded: when the exit is a cancellation (the client went away), the slot is still given back.
        await asyncio.shield(sync_to_async(self.release)())


def give_back_unreleased(key: ApiKey, token: str) -> None:
    """The slot of an Admission collected without release. Collection may happen on an event loop, where
    the database may not be used: then on a thread of its own."""

    def give_back(threaded: bool) -> None:
        try:
            counters.counters().give_back_stream(key, token)
        except Exception:  # noqa: BLE001 - its lease lapses instead
            logger.warning(
                "a stream slot of key %s was not given back; its lease lapses", key.prefix, exc_info=True
            )
        finally:
            if threaded:
                connections.close_all()  # this thread's own connection

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        give_back(threaded=False)
        return
    threading.Thread(target=give_back, args=(True,), name="stream-slot", daemon=True).start()


def admit(key: ApiKey, *, stream: bool) -> Admission:
    """Admit a request of `key`, or raise RateLimited naming the limit reached. A streaming request takes
    one of the key's concurrent-stream slots, held until the Admission's context exits."""
    now = counters.clock()
    used = tokens_today(key)
    if used >= key.tokens_per_day:
        limit = counted(key.tokens_per_day, "token")
        raise RateLimited(
            f"Limit reached: {limit} per day for this key ({used:,} used today).", seconds_to_tomorrow()
        )
    backend = counters.counters()
    # Counted before a stream slot is taken, so a refusal here holds no slot; a refused request counts
    # against the minute too (counters.py).
    if backend.count_request(key, now) > key.requests_per_minute:
        raise RateLimited(
            f"Limit reached: {counted(key.requests_per_minute, 'request')} per minute for this key.",
            counters.seconds_left_in_window(now),
        )
    if not stream:
        return Admission(key)
    token = backend.take_stream(key, key.concurrent_streams, now)
    if token is None:
        # When a stream will end cannot be known; a few seconds is a fair pause before asking again.
        limit = counted(key.concurrent_streams, "concurrent stream")
        raise RateLimited(f"Limit reached: {limit} for this key.", 5)
    return Admission(key, token)


def counted(number: int, thing: str) -> str:
    return f"{number:,} {thing}{'' if number == 1 else 's'}"


# --- usage -------------------------------------------------------------------------------------------
def today() -> date:
    return timezone.localdate()


def seconds_to_tomorrow() -> int:
    now = timezone.localtime()
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)
    return math.ceil((midnight - now).total_seconds())


def tokens_today(key: ApiKey) -> int:
    sums = ApiKeyUsage.objects.filter(key=key, day=today()).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
    )
    return int(sums["prompt"] or 0) + int(sums["completion"] or 0)


def add_usage(key: ApiKey, model: str, prompt_tokens: int, completion_tokens: int, requests: int = 1) -> None:
    row, _ = ApiKeyUsage.objects.get_or_create(key=key, model_name=model, day=today())
    # F() so that two processes adding at once both count.
    ApiKeyUsage.objects.filter(pk=row.pk).update(
        requests=F("requests") + requests,
        prompt_tokens=F("prompt_tokens") + max(0, prompt_tokens),
        completion_tokens=F("completion_tokens") + max(0, completion_tokens),
    )


@dataclass
class KeySummary:
    """A key with its usage rows (newest day first) and what today's count of tokens is against its limit."""

    key: ApiKey
    usage: list[ApiKeyUsage]
    tokens_today: int


def key_summaries(keys: QuerySet[ApiKey]) -> list[KeySummary]:
    """Each key with its usage over the last USAGE_DAYS days, in two queries whatever the number of keys."""
    since, now = today() - timedelta(days=USAGE_DAYS - 1), today()
    rows: dict[int, list[ApiKeyUsage]] = {}
    for row in ApiKeyUsage.objects.filter(key__in=keys, day__gte=since):
        rows.setdefault(row.key_id, []).append(row)
    summaries = []
    for key in keys:
        used = sum(r.prompt_tokens + r.completion_tokens for r in rows.get(key.pk, []) if r.day == now)
        summaries.append(KeySummary(key, rows.get(key.pk, []), used))
    return summaries
