from __future__ import annotations

import os

from celery import shared_task


@shared_task(name="core.ping_task")
def ping_task(text: str = "ping") -> dict[str, str]:
    """A trivial task: proves a worker takes tasks from the broker and answers with its device."""
    from playground.core.services import device_info

    return {"echo": text, "device": device_info()["type"], "pid": str(os.getpid())}
