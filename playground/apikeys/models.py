"""API keys, their limits and their usage.

A key's secret is never stored: only its prefix (to find the row and to show in lists) and a keyed hash of
the whole secret (services.hash_secret says why HMAC rather than a password hash). Revoked keys stay, so
their usage stays on the page; a revoked key authenticates nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.core.validators import MinValueValidator
from django.db import models


def default_requests_per_minute() -> int:
    return int(settings.API_KEY_REQUESTS_PER_MINUTE)


def default_concurrent_streams() -> int:
    return int(settings.API_KEY_CONCURRENT_STREAMS)


def default_tokens_per_day() -> int:
    return int(settings.API_KEY_TOKENS_PER_DAY)


class ApiKey(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # The characters after "pg-" that start the secret: shown in lists ("pg-ab12cd34…") and used to find
    # the row, whose hash is then compared in constant time.
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    # Written at most every services.LAST_USED_EVERY, not on every request.
    last_used = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requests_per_minute = models.PositiveIntegerField(
        default=default_requests_per_minute, validators=[MinValueValidator(1)]
    )
    concurrent_streams = models.PositiveIntegerField(
        default=default_concurrent_streams, validators=[MinValueValidator(1)]
    )
    tokens_per_day = models.PositiveBigIntegerField(
        default=default_tokens_per_day, validators=[MinValueValidator(1)]
    )

    class Meta:
        ordering = ["-created"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.shown_prefix})"

    @property
    def user(self) -> User:
        """The caller a request with this key acts as."""
        return self.owner

    @property
    def shown_prefix(self) -> str:
        return f"pg-{self.prefix}…"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class ApiKeyUsage(models.Model):
    """Requests and tokens of one key on one model on one day (in TIME_ZONE): the page's table and the
    tokens-per-day limit both read it."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage")
    model_name = models.CharField(max_length=200)
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "model_name"]
        constraints = [
            models.UniqueConstraint(fields=["key", "model_name", "day"], name="apikeys_usage_key_model_day")
        ]

    def __str__(self) -> str:
        return f"{self.key_id} {self.model_name} {self.day}"


# --- the database backend of the short-lived counters (without REDIS_URL; see counters.py) ----------
class RequestWindow(models.Model):
    """Requests of one key in one fixed minute."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    started = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "started"], name="apikeys_window_key_started")]

    def __str__(self) -> str:
        return f"{self.key_id} {self.started}: {self.count}"


class StreamSlot(models.Model):
    """A streaming response in flight; one whose process died without releasing it lapses at `expires`."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    token = models.CharField(max_length=32, unique=True)
    expires = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.key_id} until {self.expires}"
