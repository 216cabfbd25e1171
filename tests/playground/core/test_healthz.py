from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from playground.core.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def beat(hostname: str = "cpu@box", age_seconds: float = 0, device: str = "cpu") -> WorkerHeartbeat:
    now = timezone.now()
    return WorkerHeartbeat.objects.create(
        hostname=hostname,
        device=device,
        device_name="x86_64",
        queues=["cpu"],
        pid=1,
        started=now,
        last_seen=now - timedelta(seconds=age_seconds),
    )


def test_healthz_needs_no_login_and_reports_every_part(client: Client) -> None:
    beat()
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "channel_layer", "workers"}
    assert body["checks"]["workers"]["workers"][0]["device"] == "cpu"
    assert body["loaded_models"] == []


def test_healthz_is_503_when_no_worker_is_alive(client: Client) -> None:
    beat(age_seconds=3600)  # a worker that stopped beating an hour ago
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["ok"] is False
    assert "no live Celery worker" in response.json()["checks"]["workers"]["error"]


def test_healthz_is_503_when_the_broker_is_down(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    from playground.celery import app

    beat()
    old = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = client.get("/healthz")
    finally:
        app.conf.broker_url = old
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True


def test_healthz_lists_loaded_models(client: Client, tiny_model) -> None:  # type: ignore[no-untyped-def]
    from playground.core.services import model_cache

    beat()
    model_cache().get("tiny-llama")
    try:
        loaded = client.get("/healthz").json()["loaded_models"]
    finally:
        model_cache().clear()
    assert [m["name"] for m in loaded] == ["tiny-llama"]
    assert loaded[0]["device"] == "cpu"
