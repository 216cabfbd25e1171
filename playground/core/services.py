"""Shared services: the model store and cache, device facts, health checks, admin and login links."""

from __future__ import annotations

import functools
import secrets
import time
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import connection
from django.http import HttpRequest
from django.urls import reverse

from llmcore.attention import CaptureBusy
from llmcore.config import settings_of, whole_numbers
from llmcore.errors import UserError  # noqa: F401 (the base every app's user-facing errors share)
from llmcore.grammar import MAX_SCHEMA_CHARS, Constraint, json_object, json_schema
from llmcore.loading import ModelCache, best_device
from llmcore.sampling import (
    STAGES,  # noqa: F401 (the explorer's form lists the stage orders)
    SamplingConfig,
)
from llmcore.store import ModelStore
from llmcore.text import JsonTooDeep, json_type, loads_json, text_problem  # noqa: F401 (core.text's)
from playground.celery import app
from playground.core.models import WorkerHeartbeat


# --- errors a user should read --------------------------------------------------------------------
class PlaygroundError(UserError):
    """A UserError of the web side (llmcore.errors), with the HTTP status it is answered with. Every
    app's user-facing errors derive from it; the API helper (core.api.api_view) and, for whatever a view
    leaves unhandled, core.errors.UserErrorMiddleware answer any UserError, in one place each."""

    status = 400

    def __init__(self, message: str = "", status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


def error_status(exc: UserError) -> int:
    """The HTTP status of a user-facing error: its own, or 400; 503 for a server too busy to take it."""
    if isinstance(exc, CaptureBusy):
        return 503
    return int(getattr(exc, "status", 400))


# --- models ---------------------------------------------------------------------------------------
def model_store() -> ModelStore:
    return ModelStore(settings.MODEL_DIR)


@functools.cache
def _cache_for(model_dir: str, max_models: int, device: str) -> ModelCache:
    return ModelCache(ModelStore(model_dir), max_models=max_models, device=device)


def model_cache() -> ModelCache:
    """This process's cache of loaded models (one per settings combination, so tests stay isolated)."""
    return _cache_for(str(settings.MODEL_DIR), settings.MAX_LOADED_MODELS, settings.MODEL_DEVICE)


def device_info() -> dict[str, str]:
    device = best_device(settings.MODEL_DEVICE)
    if device.type == "cuda":
        import torch

        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = "Apple GPU"
    else:
        import platform

        name = platform.processor() or platform.machine()
    return {"type": device.type, "name": name}


# --- health ---------------------------------------------------------------------------------------
def _timed(check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
        result: dict[str, Any] = {"ok": True, **(detail or {})}
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def check_broker() -> dict[str, Any]:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
        return {"transport": conn.transport_cls if isinstance(conn.transport_cls, str) else "custom"}


def check_channel_layer() -> dict[str, Any]:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def roundtrip() -> None:
        import asyncio

        channel = await layer.new_channel()
        token = secrets.token_hex(8)
        await layer.send(channel, {"type": "health.check", "token": token})
        message = await asyncio.wait_for(layer.receive(channel), timeout=3)
        if message.get("token") != token:
            raise RuntimeError("the channel layer returned a different message")

    async_to_sync(roundtrip)()
    return {"backend": type(layer).__name__}


def check_workers() -> dict[str, Any]:
    workers = [
        {
            "hostname": w.hostname,
            "device": w.device,
            "device_name": w.device_name,
            "queues": w.queues,
            "last_seen": w.last_seen.isoformat(),
        }
        for w in WorkerHeartbeat.objects.live()
    ]
    if not workers:
        raise RuntimeError(
            "no live Celery worker (start one with `make run` or `celery -A playground worker`)"
        )
    return {"workers": workers}


def health() -> tuple[bool, dict[str, Any]]:
    """Every part the site needs; ok only if all of them answer."""
    checks = {
        "database": _timed(check_database),
        "broker": _timed(check_broker),
        "channel_layer": _timed(check_channel_layer),
        "workers": _timed(check_workers),
    }
    ok = all(c["ok"] for c in checks.values())
    loaded = [m.describe() for m in model_cache().loaded()]
    return ok, {"status": "ok" if ok else "down", "checks": checks, "loaded_models": loaded}


def health_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see: the overall status and each check's ok flag, nothing about hosts or models."""
    return {
        "status": report["status"],
        "checks": {name: {"ok": check["ok"]} for name, check in report["checks"].items()},
    }


def may_see_health_details(request: HttpRequest) -> bool:
    """A logged-in user, or a caller with HEALTHZ_TOKEN as `Authorization: Bearer <token>` or `?token=`."""
    return request.user.is_authenticated or bearer_token_matches(request, settings.HEALTHZ_TOKEN)


def bearer_token_matches(request: HttpRequest, expected: str) -> bool:
    """Whether the request sends `expected` as `Authorization: Bearer <token>` or `?token=` (for monitors
    that cannot set a header); never when no token is configured."""
    if not expected:
        return False
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else request.GET.get("token", "")
    return bool(given) and secrets.compare_digest(given.encode(), expected.encode())


# --- accounts -------------------------------------------------------------------------------------
LOGIN_LINK_SALT = "playground.core.login-link"


def _last_login_stamp(user) -> str:
    return user.last_login.isoformat() if user.last_login else "never"


def login_link_path(user) -> str:
    """A signed, expiring, one-time login link: it names the user's last login, so using it spends it."""
    token = signing.dumps({"u": user.pk, "l": _last_login_stamp(user)}, salt=LOGIN_LINK_SALT)
    return reverse("login-link", args=[token])


def user_for_login_link(token: str):
    try:
        data = signing.loads(token, salt=LOGIN_LINK_SALT, max_age=settings.LOGIN_LINK_TIMEOUT)
    except signing.BadSignature:  # also SignatureExpired
        return None
    user = get_user_model().objects.filter(pk=data.get("u"), is_active=True).first()
    if user is None or _last_login_stamp(user) != data.get("l"):
        return None
    return user


def ensure_admin(username: str = "admin"):
    """Make sure a superuser exists; a new one gets no password (log in with a one-time link)."""
    User = get_user_model()
    existing = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
    if existing:
        return existing, False
    user = User.objects.create_superuser(username=username, email="", password=None)
    return user, True


# --- the sampler's settings as the pages show them --------------------------------------------------
def setting_rows(config: type) -> list[dict[str, Any]]:
    """name, label, min, max, step, hint, choices, default, integer, methods (those it concerns; empty:
    all) and group of each field of an llmcore config dataclass that carries its Setting (llmcore.config):
    what the forms, panels and sliders are built from (playground/core/forms.py builds the fields), so a
    bound, an explanation or the methods a setting belongs to is written once."""
    whole = whole_numbers(config)
    return [
        {
            "name": name,
            "label": s.label,
            "min": s.minimum,
            "max": s.maximum,
            "step": s.step,
            "hint": s.help,
            "choices": list(s.choices),
            "default": default,
            "integer": name in whole,
            "methods": list(s.methods),
            "group": s.group,
        }
        for name, (s, default) in settings_of(config).items()
    ]


def sampler_rows() -> list[dict[str, Any]]:
    """The sampler's settings (llmcore.sampling): the chat's and the next-token explorer's forms, panel
    and sliders."""
    return setting_rows(SamplingConfig)


# --- structured output (llmcore.grammar) ------------------------------------------------------------
# What an answer may be, as the chat panel and the next-token explorer offer it (the /v1 API reads
# OpenAI's response_format into the same constraints).
RESPONSE_FORMATS = [("text", "free text"), ("json_object", "any JSON object"), ("json_schema", "JSON schema")]
SCHEMA_CHARS = MAX_SCHEMA_CHARS


def output_constraint(response_format: str, schema: str = "", strict: bool = True) -> Constraint | None:
    """The grammar an answer must follow for a response format: None for free text, any JSON object,
    or JSON valid against `schema` (its JSON text). A schema that cannot be enforced raises
    llmcore.grammar.GrammarError (a UserError) that names the problem."""
    if response_format == "json_object":
        return json_object()
    if response_format == "json_schema":
        return json_schema(schema, strict=strict)
    return None
