"""What a Celery worker knows about itself: its device, and a heartbeat row while it runs."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

log = logging.getLogger(__name__)
_stop = threading.Event()
_hostname: str | None = None
_beat_hooks: list[Callable[[str], None]] = []
_pool_parent: int | None = None  # in a prefork pool process: the worker's main process


def on_beat(hook: Callable[[str], None]) -> Callable[[str], None]:
    """Run `hook(hostname)` after every heartbeat of a worker (the jobs app checks for stuck jobs)."""
    _beat_hooks.append(hook)
    return hook


def remember_pool_parent() -> None:
    """Called in each prefork pool process as it starts."""
    global _pool_parent
    _pool_parent = os.getppid()


def pool_parent_gone() -> bool:
    """True in a pool process whose worker's main process died (kill -9): nobody will ack its task or
    hear its result, so a job it runs should stop and say so rather than carry on unseen."""
    return _pool_parent is not None and os.getppid() != _pool_parent


def worker_device() -> dict[str, str]:
    from playground.core.services import device_info

    return device_info()


def beat(hostname: str, queues: list[str], started) -> None:  # type: ignore[no-untyped-def]
    from playground.core.models import WorkerHeartbeat

    device = worker_device()
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={
            "device": device["type"],
            "device_name": device["name"],
            "queues": queues,
            "pid": os.getpid(),
            "started": started,
            "last_seen": timezone.now(),
        },
    )


def start_heartbeat(hostname: str, queues: list[str]) -> None:
    global _hostname
    _hostname = hostname
    started = timezone.now()
    _stop.clear()

    def loop() -> None:
        # The first beat may come before the web container has migrated, or while the database
        # restarts: log and keep trying rather than going silent for good.
        while True:
            try:
                close_old_connections()
                beat(hostname, queues, started)
            except Exception:
                log.exception("worker heartbeat failed; retrying")
            for hook in _beat_hooks:
                try:
                    hook(hostname)
                except Exception:
                    log.exception("a heartbeat check failed")
            if _stop.wait(settings.WORKER_HEARTBEAT_SECONDS):
                return

    threading.Thread(target=loop, name="heartbeat", daemon=True).start()


def stop_heartbeat() -> None:
    from playground.core.models import WorkerHeartbeat

    _stop.set()
    if _hostname:
        try:
            close_old_connections()
            WorkerHeartbeat.objects.filter(hostname=_hostname).delete()
        except Exception:
            log.exception("could not remove the worker's heartbeat row")


def live_workers():  # type: ignore[no-untyped-def]
    from playground.core.models import WorkerHeartbeat

    since = timezone.now() - timedelta(seconds=settings.WORKER_HEARTBEAT_TIMEOUT)
    return WorkerHeartbeat.objects.filter(last_seen__gte=since).order_by("hostname")
