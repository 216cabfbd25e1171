"""The engines' numbers from every web process, for the Engine page and /metrics.

Engines live in the web processes that serve chats (one `llmcore.engine.Engine` per loaded model), so
behind several processes each has its own. Each process publishes a snapshot of its engines into Django's
cache under a key of its own that lives SNAPSHOT_TTL seconds, and records itself in a registry of workers;
readers show every worker in the registry, and a worker whose snapshot has expired as gone. A process
publishes whenever it answers the Engine page or /metrics (no thread of its own). With REDIS_URL the cache
is Redis, shared by every process; without it, the local memory of the one process `make run` starts.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from redis.exceptions import RedisError

from playground.catalog.models import ModelEntry
from playground.catalog.services import may_see
from playground.chat.services import engine_metrics
from playground.core.services import bearer_token_matches

SNAPSHOT_TTL = 15  # seconds a worker's snapshot counts as live
FORGET_AFTER = 600  # seconds after its last snapshot a gone worker leaves the registry
REGISTRY_KEY = "engine:workers"  # {worker: time of its last snapshot}

log = logging.getLogger(__name__)
# This process's worker label ("host:pid", as its engines report it), once it has run an engine: a
# process whose engines were all closed still publishes, saying it runs none, instead of going silent.
_own_worker: str | None = None


@dataclass(frozen=True)
class WorkerSnapshot:
    """One web process's engines as it last published them."""

    worker: str
    published: float  # time.time() of the snapshot
    engines: list[dict[str, Any]]  # Engine.metrics() of each, by model; empty when gone
    live: bool  # False: no snapshot for over SNAPSHOT_TTL seconds (the process stopped, or is silent)
    hidden: int = 0  # engines left out because their model is private to someone else


@dataclass(frozen=True)
class EngineOverview:
    workers: list[WorkerSnapshot]
    shared: bool  # False: the cache could not be reached, so these are this process's engines only

    @property
    def engines(self) -> list[dict[str, Any]]:
        return [e for w in self.workers if w.live for e in w.engines]

    @property
    def hidden(self) -> int:
        return sum(w.hidden for w in self.workers)


def may_read_metrics(request: HttpRequest) -> bool:
    """A logged-in user, or a caller sending METRICS_TOKEN as `Authorization: Bearer <token>` (or
    `?token=`)."""
    return request.user.is_authenticated or bearer_token_matches(request, settings.METRICS_TOKEN)


def hide_private_models(overview: EngineOverview, user: Any) -> EngineOverview:
    """The overview without engines of models this user may not see: a private model's name is its
    owner's (a model the catalog does not know is nobody's, and stays)."""
    names = {e["model"] for e in overview.engines}
    private = {m.name for m in ModelEntry.objects.filter(name__in=names) if not may_see(user, m)}
    if not private:
        return overview
    workers = []
    for w in overview.workers:
        shown = [e for e in w.engines if e["model"] not in private]
        workers.append(replace(w, engines=shown, hidden=w.hidden + len(w.engines) - len(shown)))
    return replace(overview, workers=workers)


def engine_overview() -> EngineOverview:
    """Publish this process's snapshot, then read every worker's."""
    own = engine_metrics()
    now = time.time()
    try:
        _publish_own(own, now)
        return EngineOverview(read_snapshots(now), shared=True)
    except (RedisError, OSError) as exc:  # Redis down: still show what this process knows
        log.warning("engine snapshots: the cache is unreachable (%s)", exc)
        worker = own[0]["worker"] if own else _own_worker
        workers = [WorkerSnapshot(worker, now, own, live=True)] if worker else []
        return EngineOverview(workers, shared=False)


def _publish_own(engines: list[dict[str, Any]], now: float) -> None:
    global _own_worker
    if engines:
        _own_worker = engines[0]["worker"]
    if _own_worker is not None:
        publish(_own_worker, engines, now)


def publish(worker: str, engines: list[dict[str, Any]], now: float | None = None) -> None:
    """Store a worker's snapshot (its engines' metrics) and record the worker in the registry."""
    now = time.time() if now is None else now
    cache.set(_snapshot_key(worker), {"published": now, "engines": engines}, SNAPSHOT_TTL)
    # Read-modify-write: two workers registering for the first time at the same instant can drop one,
    # which its next snapshot (its next page or /metrics answer) puts back.
    registry = {w: t for w, t in (cache.get(REGISTRY_KEY) or {}).items() if now - t <= FORGET_AFTER}
    registry[worker] = now
    cache.set(REGISTRY_KEY, registry, FORGET_AFTER)


def read_snapshots(now: float | None = None) -> list[WorkerSnapshot]:
    """Every registered worker, by label: live ones with their engines, gone ones with when they last
    published."""
    now = time.time() if now is None else now
    registry: dict[str, float] = cache.get(REGISTRY_KEY) or {}
    keys = {worker: _snapshot_key(worker) for worker in registry}
    found = cache.get_many(list(keys.values()))
    workers = []
    for worker, last in sorted(registry.items()):
        if now - last > FORGET_AFTER:
            continue
        snapshot = found.get(keys[worker])
        if snapshot is not None and now - snapshot["published"] <= SNAPSHOT_TTL:
            workers.append(WorkerSnapshot(worker, snapshot["published"], snapshot["engines"], live=True))
        else:
            workers.append(WorkerSnapshot(worker, last, [], live=False))
    return workers


def _snapshot_key(worker: str) -> str:
    # Hashed: a label is a host name and a pid, but cache keys must not carry spaces or odd characters.
    return "engine:snapshot:" + hashlib.sha256(worker.encode()).hexdigest()[:24]
