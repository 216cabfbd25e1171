"""/metrics on a real engine: refused without a login or the token, parseable Prometheus text with them."""

from __future__ import annotations

import math
import re
import time

import pytest
from django.test import Client
from django.urls import reverse

from playground.engine import services
from tests.playground.engine.conftest import Running

pytestmark = pytest.mark.django_db
TOKEN = "scrape-me-0123456789"
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"^({NAME})(?:\{{(.*)\}})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)')
UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """Prometheus text format 0.0.4, strictly: every sample after its family's TYPE line, labels escaped."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"{name} declared twice"
            types[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, raw, value = match.groups()
        assert name == list(types)[-1], f"{name} is outside its family"
        labels, end = {}, 0
        for pair in LABEL.finditer(raw or ""):
            assert pair.start() == end, f"bad labels in {line!r}"
            labels[pair.group(1)] = re.sub(r"\\(.)", lambda m: UNESCAPE[m.group(1)], pair.group(2))
            end = pair.end()
        assert end == len(raw or ""), f"bad labels in {line!r}"
        samples.append((name, labels, float(value)))
    return types, samples


def value(samples, name: str, **labels: str) -> float:
    found = [v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


def test_a_stranger_gets_401_and_never_the_numbers(
    client: Client, running: Running, generated: int, settings
) -> None:
    settings.METRICS_TOKEN = TOKEN
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong-token"}, {"HTTP_AUTHORIZATION": TOKEN}):
        response = client.get(reverse("engine:metrics"), **headers)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"playground_engine_" not in response.content
        assert b"tiny-llama" not in response.content


def test_without_a_metrics_token_configured_no_bearer_token_is_accepted(client: Client, settings) -> None:
    settings.METRICS_TOKEN = ""
    response = client.get(reverse("engine:metrics"), HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 401


def test_the_token_gets_prometheus_text_whose_counter_is_what_the_engine_generated(
    client: Client, running: Running, generated: int, settings
) -> None:
    settings.METRICS_TOKEN = TOKEN
    response = client.get(reverse("engine:metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    types, samples = parse(response.content.decode())
    ours = {"model": "tiny-llama", "worker": running.worker}
    assert value(samples, "playground_engine_generated_tokens_total", **ours) == generated
    assert types["playground_engine_generated_tokens_total"] == "counter"
    assert value(samples, "playground_engine_max_sequences", **ours) == 16
    assert value(samples, "playground_engine_active_sequences", **ours) == 0
    assert value(samples, "playground_engine_forward_passes_total", **ours) >= 1
    assert value(samples, "playground_engine_finished_requests_total", reason="length", **ours) == 1
    assert value(samples, "playground_engine_worker_up", worker=running.worker) == 1
    assert value(samples, "playground_engine_info", device="cpu", attention="sdpa-auto", **ours) == 1
    # a 4-token prompt fills no whole prefix-cache block, so nothing was looked up: NaN, not 0
    assert math.isnan(value(samples, "playground_engine_prefix_cache_hit_rate", **ours))
    for name, kind in types.items():
        assert name.startswith("playground_engine_")
        assert (kind == "counter") == name.endswith("_total"), name


def test_a_logged_in_user_gets_the_same_text(client_in: Client, running: Running, generated: int) -> None:
    response = client_in.get(reverse("engine:metrics"))
    assert response.status_code == 200
    _, samples = parse(response.content.decode())
    ours = {"model": "tiny-llama", "worker": running.worker}
    assert value(samples, "playground_engine_generated_tokens_total", **ours) == generated
    running.generate(2)
    _, samples = parse(client_in.get(reverse("engine:metrics")).content.decode())
    assert value(samples, "playground_engine_generated_tokens_total", **ours) == generated + 2


def test_label_values_are_escaped_and_gone_workers_are_down(client_in: Client, running: Running) -> None:
    model, worker = 'we\\ird "model"\nname', 'host"x\\:1'
    services.publish(worker, [{**running.engine.metrics(), "model": model, "worker": worker}])
    services.publish("gone-host:7", [running.engine.metrics()], now=time.time() - services.SNAPSHOT_TTL - 1)
    text = client_in.get(reverse("engine:metrics")).content.decode()
    assert 'model="we\\\\ird \\"model\\"\\nname"' in text
    _, samples = parse(text)
    assert value(samples, "playground_engine_generated_tokens_total", model=model, worker=worker) >= 0
    assert value(samples, "playground_engine_worker_up", worker=worker) == 1
    assert value(samples, "playground_engine_worker_up", worker="gone-host:7") == 0
    assert value(samples, "playground_engine_worker_snapshot_age_seconds", worker="gone-host:7") > 15
    assert not [s for s in samples if s[1].get("worker") == "gone-host:7" and "model" in s[1]]
