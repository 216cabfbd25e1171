"""The production shape: with REDIS_URL every web process publishes into Redis, so the Engine page and
/metrics of one process show another process's engines too, each under its own worker label."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from playground.engine import services
from tests.conftest import ROOT, redis_available, redis_url_for_tests, require, site_env
from tests.playground.engine.conftest import Running
from tests.playground.engine.test_metrics import parse, value

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

OTHER_PROCESS = """
import json, django
django.setup()
from llmcore.engine import GenerationRequest
from llmcore.sampling import SamplingConfig
from playground.chat.services import engine_for
from playground.engine.services import engine_overview
engine = engine_for("tiny-llama")
request = GenerationRequest(prompt_ids=[5, 6, 7], sampling=SamplingConfig(temperature=0.0), max_new_tokens=5,
                            ignore_stop_tokens=True)
engine.generate(request)
engine_overview()  # what answering the Engine page or /metrics does: publish this process's snapshot
print(json.dumps(engine.metrics()["worker"]))
"""


@pytest.fixture
def redis_cache(settings):
    url = redis_url_for_tests()
    require(redis_available(url), f"no Redis answers at {url}")
    # What playground/settings.py configures when REDIS_URL is set, so both processes share the keys.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "playground",
        }
    }
    from django.core.cache import cache

    cache.delete(services.REGISTRY_KEY)
    yield url
    cache.delete(services.REGISTRY_KEY)


def test_a_second_web_process_shows_on_the_page_and_in_metrics_under_its_worker(
    redis_cache: str, client_in: Client, running: Running, generated: int, tmp_path: Path, settings
) -> None:
    env = site_env(tmp_path / "other", REDIS_URL=redis_cache, MODEL_DIR=str(settings.MODEL_DIR))
    env["DJANGO_SETTINGS_MODULE"] = "playground.settings"
    result = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    other = json.loads(result.stdout.strip().splitlines()[-1])
    assert other != running.worker

    html = client_in.get(reverse("engine:page")).content.decode()
    assert f"<code>{other}</code>" in html
    assert f"<code>{running.worker}</code>" in html
    assert html.count('<span class="badge live">live</span>') == 2

    _, samples = parse(client_in.get(reverse("engine:metrics")).content.decode())
    total = "playground_engine_generated_tokens_total"
    assert value(samples, total, model="tiny-llama", worker=other) == 5
    assert value(samples, total, model="tiny-llama", worker=running.worker) == generated
