"""What a Celery worker knows about itself: its device, its queues, and a heartbeat row while it runs.

Imported by the worker with the apps' task modules (playground/core/tasks.py), which connects the
handlers below to the worker's start and stop."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from playground.core.models import WorkerHeartbeat
from playground.core.services import device_info

log = logging.getLogger(__name__)
GPU_DEVICES = {"cuda", "mps"}  # devices whose workers take the `gpu` queue
_stop = threading.Event()
_hostname: str | None = None
_beat_hooks: list[Callable[[str], None]] = []
# The worker's main process forks its pool processes. A pool process forked while the heartbeat thread is
# inside a SQLite statement inherits SQLite's in-process record of that lock, held by a thread it does
# not have, and can never write again ("database is locked" on every job). So a fork waits until the
# heartbeat's database work is done (the main thread's own queries never overlap its forks).
_db_work = threading.Lock()
os.register_at_fork(
    before=_db_work.acquire, after_in_parent=_db_work.release, after_in_child=_db_work.release
)


def on_beat(hook: Callable[[str], None]) -> Callable[[str], None]:
    """Run `hook(hostname)` after every heartbeat of a worker (the jobs app checks for stuck jobs)."""
    _beat_hooks.append(hook)
    return hook


def beat(hostname: str, queues: list[str], started) -> None:
    device = device_info()
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
            with _db_work:
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
                if connection.vendor == "sqlite":
                    connection.close()  # no SQLite connection of this thread is open across a fork
            if _stop.wait(settings.WORKER_HEARTBEAT_SECONDS):
                return

    threading.Thread(target=loop, name="heartbeat", daemon=True).start()


def stop_heartbeat() -> None:
    _stop.set()
    if _hostname:
        try:
            close_old_connections()
            WorkerHeartbeat.objects.filter(hostname=_hostname).delete()
        except Exception:
            log.exception("could not remove the worker's heartbeat row")


# --- the worker's signals ---
@celeryd_after_setup.connect
def choose_queues(sender: str, instance, conf, **kwargs) -> None:
    device = device_info()
    queues = instance.app.amqp.queues
    # Respect an explicit -Q; otherwise (both queues selected by default) drop `gpu` on a CPU-only worker.
    if set(queues.consume_from) == {"cpu", "gpu"} and device["type"] not in GPU_DEVICES:
        queues.deselect("gpu")


@worker_ready.connect
def heartbeat_on_start(sender, **kwargs) -> None:
    start_heartbeat(sender.hostname, sorted(sender.app.amqp.queues.consume_from))


@worker_shutdown.connect
def heartbeat_on_stop(sender, **kwargs) -> None:
    stop_heartbeat()
