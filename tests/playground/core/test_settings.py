"""Settings are read from the environment: each case runs in a fresh interpreter with its own env."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({"
    "'db': s.DATABASES['default']['ENGINE'], 'db_name': str(s.DATABASES['default']['NAME']),"
    "'db_options': s.DATABASES['default'].get('OPTIONS', {}),"
    "'broker': s.CELERY_BROKER_URL, 'results': s.CELERY_RESULT_BACKEND,"
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'debug': s.DEBUG, 'key': s.SECRET_KEY,"
    "'serializer': s.CELERY_TASK_SERIALIZER, 'accept': s.CELERY_ACCEPT_CONTENT,"
    "'acks_late': s.CELERY_TASK_ACKS_LATE, 'prefetch': s.CELERY_WORKER_PREFETCH_MULTIPLIER,"
    "'hf_offline': __import__('os').environ.get('HF_HUB_OFFLINE')}))"
)
CLEAN = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}


def run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**CLEAN, "DJANGO_SETTINGS_MODULE": "playground.settings", **env}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True)


def probe(env: dict[str, str]) -> dict:
    result = run(PROBE, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_no_variables_means_embedded_parts_that_need_no_server(tmp_path: Path) -> None:
    s = probe({"DATA_DIR": str(tmp_path)})
    assert s["db"] == "django.db.backends.sqlite3"
    assert s["db_name"] == str(tmp_path / "playground.sqlite3")
    assert "journal_mode=WAL" in s["db_options"]["init_command"]
    assert s["broker"] == f"sqla+sqlite:///{tmp_path / 'celery-broker.sqlite3'}"
    assert s["results"].startswith("db+sqlite:///")
    assert s["layer"] == "channels.layers.InMemoryChannelLayer"
    assert s["debug"] is True
    assert s["hf_offline"] == "1"
    assert (s["serializer"], s["accept"], s["acks_late"], s["prefetch"]) == ("json", ["json"], True, 1)


def test_the_development_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = probe({"DATA_DIR": str(tmp_path)})["key"]
    second = probe({"DATA_DIR": str(tmp_path)})["key"]
    assert len(first) >= 50
    assert first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_redis_url_switches_broker_results_and_channel_layer(tmp_path: Path) -> None:
    s = probe({"DATA_DIR": str(tmp_path), "REDIS_URL": "redis://cache.internal:6379/2"})
    assert s["broker"] == s["results"] == "redis://cache.internal:6379/2"
    assert s["layer"] == "channels_redis.core.RedisChannelLayer"


def test_database_url_switches_to_postgresql(tmp_path: Path) -> None:
    s = probe({"DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://u:p@db.internal:5432/play"})
    assert s["db"] == "django.db.backends.postgresql"
    assert s["db_name"] == "play"


def test_production_without_a_secret_key_fails_loudly(tmp_path: Path) -> None:
    result = run(PROBE, {"DATA_DIR": str(tmp_path), "PRODUCTION": "1"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def production_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "DATA_DIR": str(data_dir),
        "PRODUCTION": "1",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "playground.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://playground.example.org",
        **extra,
    }


def manage_py(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**CLEAN, **env}, capture_output=True, text=True
    )


def test_check_deploy_passes_with_the_production_variables(tmp_path: Path) -> None:
    result = manage_py(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_serves_collected_static_files_with_hashed_names(tmp_path: Path) -> None:
    env = production_env(tmp_path, ALLOWED_HOSTS="testserver", STATIC_ROOT=str(tmp_path / "static"))
    collect = manage_py(env, "collectstatic", "--noinput")
    assert collect.returncode == 0, collect.stderr
    code = (
        "import django; django.setup()\n"
        "from django.templatetags.static import static\n"
        "from django.test import Client\n"
        "url = static('css/site.css')\n"
        "r = Client().get(url, secure=True)\n"
        "print(url, r.status_code, r.headers.get('Cache-Control'), sep='|')\n"
    )
    result = run(code, env)
    assert result.returncode == 0, result.stderr
    url, status, cache = result.stdout.strip().splitlines()[-1].split("|")
    assert url.startswith("/static/css/site.")
    assert url != "/static/css/site.css"
    assert status == "200"
    assert "max-age" in cache
