from __future__ import annotations

import pytest

from playground.apikeys import counters, services
from playground.apikeys.models import ApiKey
from tests.conftest import redis_available, redis_url_for_tests, require


@pytest.fixture(params=["database", "redis"])
def backend(request: pytest.FixtureRequest, settings) -> str:
    """Each limit test runs on both counters: the database's (no REDIS_URL) and Redis's."""
    settings.REDIS_URL = use_redis() if request.param == "redis" else ""
    return request.param


@pytest.fixture
def redis_backend(settings) -> str:
    settings.REDIS_URL = use_redis()
    return settings.REDIS_URL


def use_redis() -> str:
    url = redis_url_for_tests()
    require(redis_available(url), f"no Redis answers at {url}")
    return url


@pytest.fixture
def key_and_secret(user) -> tuple[ApiKey, str]:
    return services.create_key(user, "script")


@pytest.fixture
def key(key_and_secret: tuple[ApiKey, str]) -> ApiKey:
    return key_and_secret[0]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The counters' time, set by the test: [seconds since the epoch], 15 s into a minute to begin."""
    now = [1_800_000_000.0 - 1_800_000_000.0 % 60 + 15]
    monkeypatch.setattr(counters, "clock", lambda: now[0])
    return now
