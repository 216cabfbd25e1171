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


def test_a_logged_in_user_sees_every_part_in_detail(client_in: Client) -> None:
    beat()
    response = client_in.get("/healthz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "channel_layer", "workers"}
    assert body["checks"]["workers"]["workers"][0]["device"] == "cpu"
    assert body["loaded_models"] == []


def test_strangers_get_the_status_and_ok_flags_only(client: Client) -> None:
    beat(hostname="gpu@secret-host", device="cuda")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {name: {"ok": True} for name in ("database", "broker", "channel_layer", "workers")},
    }
    assert b"secret-host" not in response.content
    assert b"sqlite" not in response.content


def test_strangers_still_get_503_when_a_part_is_down(client: Client) -> None:
    beat(age_seconds=3600)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "down"
    assert response.json()["checks"]["workers"] == {"ok": False}


@pytest.mark.parametrize("how", ["header", "query"])
def test_the_healthz_token_shows_the_details(client: Client, settings, how: str) -> None:
    settings.HEALTHZ_TOKEN = "s3cret-monitor-token"
    beat(hostname="cpu@box-7")
    if how == "header":
        response = client.get("/healthz", headers={"Authorization": "Bearer s3cret-monitor-token"})
    else:
        response = client.get("/healthz?token=s3cret-monitor-token")
    assert response.json()["checks"]["workers"]["workers"][0]["hostname"] == "cpu@box-7"
    assert response.json()["checks"]["database"]["vendor"] == "sqlite"


@pytest.mark.parametrize("token", ["", "wrong", "s3cret-monitor-token-and-more"])
def test_a_wrong_or_missing_healthz_token_shows_no_details(client: Client, settings, token: str) -> None:
    settings.HEALTHZ_TOKEN = "s3cret-monitor-token"
    beat(hostname="cpu@box-7")
    response = client.get("/healthz", headers={"Authorization": f"Bearer {token}"})
    assert b"box-7" not in response.content
    assert set(response.json()) == {"status", "checks"}


def test_with_no_token_configured_an_empty_bearer_shows_no_details(client: Client, settings) -> None:
    settings.HEALTHZ_TOKEN = ""
    beat(hostname="cpu@box-7")
    response = client.get("/healthz?token=")
    assert b"box-7" not in response.content


def test_healthz_is_503_when_no_worker_is_alive(client_in: Client) -> None:
    beat(age_seconds=3600)  # a worker that stopped beating an hour ago
    response = client_in.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["ok"] is False
    assert "no live Celery worker" in response.json()["checks"]["workers"]["error"]


def test_healthz_is_503_when_the_broker_is_down(client_in: Client, settings) -> None:
    from playground.celery import app

    beat()
    old = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = client_in.get("/healthz")
    finally:
        app.conf.broker_url = old
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True


def test_healthz_lists_loaded_models(client_in: Client, tiny_model) -> None:
    from playground.core.services import model_cache

    beat()
    model_cache().get("tiny-llama")
    try:
        loaded = client_in.get("/healthz").json()["loaded_models"]
    finally:
        model_cache().clear()
    assert [m["name"] for m in loaded] == ["tiny-llama"]
    assert loaded[0]["device"] == "cpu"
