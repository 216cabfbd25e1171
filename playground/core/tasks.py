from __future__ import annotations

import os

from celery import shared_task

from playground.core import workers  # noqa: F401  (connects the worker's queue choice and heartbeat)
from playground.core.services import device_info


@shared_task(name="core.ping_task")
def ping_task(text: str = "ping") -> dict[str, str]:
    """A trivial task: proves a worker takes tasks from the broker and answers with its device."""
    return {"echo": text, "device": device_info()["type"], "pid": str(os.getpid())}
