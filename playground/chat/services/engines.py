"""The models a user may chat with and one engine per loaded model (its limits from the settings)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings as django_settings
from django.db import connections

from llmcore.engine import (
    Engine,
    EngineLimits,
)
from playground.catalog.services import chat_models, default_model_of, text_models
from playground.core.services import model_cache, model_store

logger = logging.getLogger(__name__)


# --- models and engines ---------------------------------------------------------------------------
def model_choices(user: Any = None) -> list[tuple[str, str]]:
    """Catalog models this user may chat with: local ones that generate text (encoders cannot chat) and
    remote ones; no user: the shared ones."""
    return [(e.name, e.name) for e in chat_models(user)]


def remote_hosts(user: Any = None) -> dict[str, str]:
    """The remote models this user may chat with, and the host each is served by (the page says so)."""
    return {e.name: str(e.meta["remote"].get("host", "")) for e in chat_models(user) if e.is_remote}


def draft_choices(user: Any = None) -> list[tuple[str, str]]:
    """The models that can draft for speculative decoding: local text models (a draft runs here)."""
    return [(e.name, e.name) for e in text_models(user)]


def context_lengths(user: Any = None) -> dict[str, int | None]:
    """The catalog's context length of each model this user may chat with: what the page shows before an
    answer starts (the engine's own figure, in the "started" frame, replaces it)."""
    return {e.name: e.context_length for e in chat_models(user)}


def weights_sha256(model_name: str) -> str:
    return model_store().meta(model_name).sha256


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_ready(model_name: str) -> bool:
    """Whether this process has the model loaded with its engine (else the next answer waits for it)."""
    with _engines_lock:
        engine = _engines.get(model_name)
    return engine is not None and any(m is engine.loaded for m in model_cache().loaded())


def engine_for(model_name: str) -> Engine:
    """This process's engine for a model, loading the model through the shared cache.

    An engine holds its model; when the cache has evicted or reloaded a model, its old engine is closed
    (ending what still runs on it) so the evicted weights can be freed.
    """
    loaded = model_cache().get(model_name)
    with _engines_lock:
        live = {id(m) for m in model_cache().loaded()}
        for name, old in list(_engines.items()):
            if id(old.loaded) not in live or (name == model_name and old.loaded is not loaded):
                del _engines[name]
                old.close(timeout=0)
        engine = _engines.get(model_name)
        if engine is None:
            engine = _engines[model_name] = Engine(
                loaded,
                packed_decode=django_settings.ENGINE_PACKED_DECODE,
                threads=django_settings.ENGINE_THREADS or None,
                limits=engine_limits(),
                attention=django_settings.ENGINE_ATTENTION,
                drafts=model_cache().get,
            )
        return engine


def preload_default_model() -> str | None:
    """Load the model the chat starts with (the default one, if shared) and make its engine, so the first
    answer after a start does not wait for it. Returns its name; None when there is no text model."""
    name = default_model_of([e.name for e in text_models(None)])
    if name is not None:
        engine_for(name)
    return name


def preload_in_background() -> threading.Thread | None:
    """At the web server's start (PRELOAD_DEFAULT_MODEL): preload_default_model on a thread of its own,
    so the server answers at once; a failure is logged, and the model then loads on first use."""
    if not django_settings.PRELOAD_DEFAULT_MODEL:
        return None

    def run() -> None:
        try:
            name = preload_default_model()
            logger.info("the chat's preload: %s", f"{name} is loaded" if name else "no text model to load")
        except Exception:  # noqa: BLE001 - the first answer loads it instead, and says so
            logger.exception("the chat's preload failed: the first answer will load the model")
        finally:
            connections.close_all()  # this thread's database connection

    thread = threading.Thread(target=run, name="preload-default-model", daemon=True)
    thread.start()
    return thread


def engine_limits() -> EngineLimits:
    """The engines' limits, from the ENGINE_* settings."""
    s = django_settings
    return EngineLimits(
        max_sequences=s.ENGINE_MAX_SEQUENCES,
        kv_cache_mb=s.ENGINE_KV_CACHE_MB,
        prefix_cache_mb=s.ENGINE_PREFIX_CACHE_MB,
        prefill_chunk=s.ENGINE_PREFILL_CHUNK,
        max_waiting=s.ENGINE_MAX_WAITING,
    )


def engine_metrics() -> list[dict[str, Any]]:
    """This process's running engines and their numbers (llmcore.engine.Engine.metrics), by model."""
    with _engines_lock:
        engines = sorted(_engines.items())
    return [engine.metrics() for _, engine in engines]
