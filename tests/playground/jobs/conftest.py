from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

INSTRUCTIONS = b"\n".join(
    b'{"instruction": "Say hello in pirate speak.", "output": "Ahoy, matey! ' + str(i).encode() + b'"}'
    for i in range(12)
)


@pytest.fixture
def stranger(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="another long passphrase")


@pytest.fixture
def stranger_client(stranger) -> Client:
    client = Client()
    client.force_login(stranger)
    return client


def worker_row(hostname: str, device: str, queues: list[str], age_seconds: float = 0):
    from playground.core.models import WorkerHeartbeat

    now = timezone.now() - timedelta(seconds=age_seconds)
    return WorkerHeartbeat.objects.create(
        hostname=hostname, device=device, queues=queues, pid=1, started=now, last_seen=now
    )
