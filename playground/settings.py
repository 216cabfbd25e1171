"""Settings for the playground, read from environment variables.

With no variables set everything runs on one machine with embedded parts: SQLite for data, a Celery
broker on SQLite (kombu's SQLAlchemy transport), the in-memory channel layer. REDIS_URL and DATABASE_URL
switch to Redis and PostgreSQL. Every variable is listed in README.md and .env.example.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from playground.core.env import dev_secret_key, envbool, envint, envlist, envstr

# Nothing is ever fetched from a model hub at run time: every model comes from the local store.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("DATA_DIR", str(BASE_DIR / "var"))).resolve()
MODEL_DIR = Path(envstr("MODEL_DIR", str(DATA_DIR / "models"))).resolve()
DOWNLOAD_CACHE_DIR = Path(envstr("DOWNLOAD_CACHE_DIR", str(DATA_DIR / "cache" / "downloads"))).resolve()
# A read-only store baked into the Docker image; `models pull` copies from it instead of downloading.
MODEL_SEED_DIR = envstr("MODEL_SEED_DIR") or None

PRODUCTION = envbool("PRODUCTION", False)
DEBUG = envbool("DEBUG", not PRODUCTION)

SECRET_KEY = envstr("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when PRODUCTION=1 (see .env.example).")
    SECRET_KEY = dev_secret_key(DATA_DIR / "secret_key")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "playground.core",
    "playground.catalog",
    "playground.inspect",
    "playground.chat",
    "playground.jobs",
    "playground.engine",
    "playground.accelerate",
    "playground.apikeys",
    "playground.openai_api",
    "playground.evaluate",
    "axes",  # login throttling (see Auth below)
    "csp",  # the Content-Security-Policy header (see Security below)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check reads a body: /api/ answers a body over the size limit with JSON (413).
    "playground.core.api.api_body_limit",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "playground.catalog.middleware.catalog_snapshot",  # the store is read once per request
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A user-facing error a view left unhandled: its 4xx, as JSON, an htmx alert or a page (never a 500).
    "playground.core.errors.UserErrorMiddleware",
    "playground.core.security.SiteCSPMiddleware",
    # Last, as django-axes asks: it turns a login refused for too many failures into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "playground.urls"
ASGI_APPLICATION = "playground.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            # Django 6 has {% partialdef %} built in; on 5.2 the same tags come from django-template-partials.
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "playground.core.context_processors.navigation",
            ],
        },
    },
]

# --- Data -----------------------------------------------------------------------------------------
DATA_DIR.mkdir(parents=True, exist_ok=True)
DATABASE_URL = envstr("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "playground.sqlite3"),
            # WAL lets the web server read while a worker writes; IMMEDIATE avoids "database is locked"
            # when two processes upgrade read transactions to writes at the same moment.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, Celery, Channels ----------------------------------------------------------------------
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # Every socket's consumer waits on Redis in a BZPOPMIN that blocks for 5 s (channels-redis's
    # brpop_timeout); redis-py 8 gives up reading after its new default socket_timeout, also 5 s, and the
    # TimeoutError closes the socket with 1011. A read timeout well above the block keeps idle sockets
    # open, and still lets a Redis that stopped answering fail the socket instead of hanging it forever.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
    # Shared by every web process: each publishes its engines' numbers here for the Engine page.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "playground",
            "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5},
        }
    }
else:
    # Embedded defaults that need no server: kombu's SQLAlchemy transport and Celery's database
    # result backend, both on SQLite files under DATA_DIR; the in-memory channel layer.
    CELERY_BROKER_URL = f"sqla+sqlite:///{DATA_DIR / 'celery-broker.sqlite3'}"
    CELERY_RESULT_BACKEND = f"db+sqlite:///{DATA_DIR / 'celery-results.sqlite3'}"
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
# Hard limit kills a runaway task; the soft limit before it lets the task save and report why it stopped.
JOB_TIME_LIMIT = envint("JOB_TIME_LIMIT", 6 * 3600)
CELERY_TASK_TIME_LIMIT = JOB_TIME_LIMIT + 120
CELERY_TASK_SOFT_TIME_LIMIT = JOB_TIME_LIMIT
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers report their device every few seconds; one silent for longer than the timeout is gone.
WORKER_HEARTBEAT_SECONDS = envint("WORKER_HEARTBEAT_SECONDS", 10)
WORKER_HEARTBEAT_TIMEOUT = envint("WORKER_HEARTBEAT_TIMEOUT", 3 * WORKER_HEARTBEAT_SECONDS)
# Jobs (fine-tune, distill, quantize): a running job touches its row every JOB_HEARTBEAT_SECONDS; one
# silent for JOB_HEARTBEAT_TIMEOUT whose worker is gone is marked failed ("worker lost"). A task that
# comes back after its worker died restarts the job (from its checkpoints) up to JOB_MAX_ATTEMPTS times.
JOB_HEARTBEAT_SECONDS = envint("JOB_HEARTBEAT_SECONDS", 5)
JOB_HEARTBEAT_TIMEOUT = envint("JOB_HEARTBEAT_TIMEOUT", 6 * JOB_HEARTBEAT_SECONDS)
JOB_MAX_ATTEMPTS = envint("JOB_MAX_ATTEMPTS", 2)
# A queued job whose message no worker has received for JOB_QUEUE_TIMEOUT seconds, while a worker that
# takes its queue is alive and the broker holds nothing for that queue, lost its message (Redis restarted
# without persistence, say): it is sent again, at most JOB_MAX_RESENDS times, then marked failed.
JOB_QUEUE_TIMEOUT = envint("JOB_QUEUE_TIMEOUT", 60)
JOB_MAX_RESENDS = envint("JOB_MAX_RESENDS", 2)
# Datasets for fine-tuning: the largest upload or paste and the most rows, stated on the form.
DATASET_MAX_BYTES = envint("DATASET_MAX_BYTES", 5 * 1024 * 1024)
DATASET_MAX_ROWS = envint("DATASET_MAX_ROWS", 20_000)
# Evaluation suites (llmcore.eval_suites): the largest upload or paste and the most items; bigger is refused.
EVAL_SUITE_MAX_BYTES = envint("EVAL_SUITE_MAX_BYTES", 1024 * 1024)
EVAL_SUITE_MAX_ITEMS = envint("EVAL_SUITE_MAX_ITEMS", 1000)

# --- Models ---------------------------------------------------------------------------------------
MAX_LOADED_MODELS = envint("MAX_LOADED_MODELS", 2)
# The most bytes an admin may upload to import a model (a .gguf, or a folder's files together); a bigger
# upload is refused with this limit, and a bigger model is imported by its path on the server instead.
MODEL_UPLOAD_MAX_BYTES = envint("MODEL_UPLOAD_MAX_BYTES", 4 * 1024**3)
# Remote models (OpenAI-compatible servers an admin adds as catalog models): the hosts their base URLs
# may name, as "host" or "host:port" (llmcore.remote.check_base_url). Empty: no remote models can be
# added, so the server cannot be pointed anywhere until its operator says where.
REMOTE_MODEL_HOSTS = envlist("REMOTE_MODEL_HOSTS", [])
# "auto" picks cuda, then mps, then cpu.
MODEL_DEVICE = envstr("MODEL_DEVICE", "auto")
# "auto": on a CPU the chat engine runs a copy of a model whose layers are on a 4-bit grid (imported from
# a Q4 GGUF, like the default model) with those layers packed, about 2.5x faster (llmcore/packed.py);
# "off": the float32 weights as loaded, slower and exact.
ENGINE_PACKED_DECODE = envstr("ENGINE_PACKED_DECODE", "auto")
if ENGINE_PACKED_DECODE not in ("auto", "off"):
    raise ImproperlyConfigured("ENGINE_PACKED_DECODE is auto or off.")
# CPU threads of each chat engine's decode steps, batched or not (llmcore/engine/runner.py says why 1 is
# the default; prompt passes of 384 tokens or more use all of PyTorch's threads); 0 leaves
# PyTorch's process setting for everything. Raise it on a many-core machine if `python -m bench engine`
# says it helps.
ENGINE_THREADS = envint("ENGINE_THREADS", 1)
if ENGINE_THREADS < 0:
    raise ImproperlyConfigured("ENGINE_THREADS is 0 (PyTorch's setting) or a number of threads.")
# The engine's explicit limits, per model and per web process (llmcore.engine.EngineLimits). When they are
# reached a new chat waits in line ("waiting, 2 ahead") instead of failing or slowing the others.
ENGINE_MAX_SEQUENCES = envint("ENGINE_MAX_SEQUENCES", 16)  # sequences decoded together
ENGINE_KV_CACHE_MB = envint("ENGINE_KV_CACHE_MB", 2048)  # the running sequences' KV cache
ENGINE_PREFIX_CACHE_MB = envint("ENGINE_PREFIX_CACHE_MB", 512)  # reusable prompt blocks; 0 turns it off
ENGINE_PREFILL_CHUNK = envint("ENGINE_PREFILL_CHUNK", 256)  # prompt tokens computed per step
ENGINE_MAX_WAITING = envint("ENGINE_MAX_WAITING", 256)  # requests in line beyond this are refused
if min(ENGINE_MAX_SEQUENCES, ENGINE_KV_CACHE_MB) < 1 or ENGINE_PREFIX_CACHE_MB < 0:
    raise ImproperlyConfigured(
        "ENGINE_MAX_SEQUENCES and ENGINE_KV_CACHE_MB are at least 1, ENGINE_PREFIX_CACHE_MB at least 0."
    )
if ENGINE_PREFILL_CHUNK < 16 or ENGINE_MAX_WAITING < 0:
    raise ImproperlyConfigured("ENGINE_PREFILL_CHUNK is at least 16 and ENGINE_MAX_WAITING at least 0.")
# The attention kernel of the chat engines (llmcore/kernels.py): sdpa-auto lets PyTorch choose.
ENGINE_ATTENTION = envstr("ENGINE_ATTENTION", "sdpa-auto")
# The web server loads the default model and its engine in the background as it starts, so the first
# chat answer does not wait for it (0: load on first use).
PRELOAD_DEFAULT_MODEL = envbool("PRELOAD_DEFAULT_MODEL", True)
# /metrics (Prometheus text) answers a logged-in user, or this token as `Authorization: Bearer <token>`.
METRICS_TOKEN = envstr("METRICS_TOKEN")

# Limits of the inspect tools, stated on their pages and enforced by their forms.
INSPECT_MAX_CHARS = 20_000  # text typed or pasted into a tool
INSPECT_MAX_TOKENS = 1024  # tokens a forward pass looks at (attention, logit lens, next token)
# Attention captures kept in each web process for the page to fetch heads from (about 570 MB each at
# 1024 tokens on the default model); the least recently used go first. The MB bound counts every byte a
# capture keeps plus the float32 scratch of the ones running, so it is what the process really spends on
# them; a single capture bigger than it is refused. At most INSPECT_ATTENTION_CONCURRENT captures run at
# once in a process; a request that gets no slot (or no room) within INSPECT_ATTENTION_WAIT_SECONDS is
# answered "busy, try again" (503).
INSPECT_ATTENTION_CACHE_CAPTURES = 6
INSPECT_ATTENTION_CACHE_MB = envint("INSPECT_ATTENTION_CACHE_MB", 2048)
INSPECT_ATTENTION_CONCURRENT = envint("INSPECT_ATTENTION_CONCURRENT", 2)
INSPECT_ATTENTION_WAIT_SECONDS = 5
# Training your own tokenizer: pasted text, text trained inside the request, and the largest upload
# (anything above the inline size is trained by a Celery worker).
TOKENIZER_TRAIN_MAX_PASTE_CHARS = 500_000
TOKENIZER_TRAIN_INLINE_BYTES = 200 * 1024
TOKENIZER_TRAIN_MAX_BYTES = 20 * 1024 * 1024
# Limits of the chat, stated on its page and enforced by its form and WebSocket consumer. A frame holds
# the prompt, the system prompt and the settings as JSON, so it is larger than both texts together.
CHAT_MAX_PROMPT_CHARS = 16_000  # one user message
CHAT_MAX_SYSTEM_CHARS = 4_000  # the system prompt
CHAT_MAX_NEW_TOKENS = 2048  # per answer; the model's context length lowers it further
CHAT_MAX_FRAME_BYTES = 256 * 1024  # one incoming WebSocket frame

# --- Auth -----------------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog:list"
LOGOUT_REDIRECT_URL = "login"
# One-time login links (printed by `make run`) expire after this many seconds.
LOGIN_LINK_TIMEOUT = envint("LOGIN_LINK_TIMEOUT", 24 * 3600)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT failures from one client address, or for one
# account, further logins from that address or to that account are refused with a 429 page until
# LOGIN_COOLOFF_MINUTES have passed since the last failure. The login page, the admin login and one-time
# login links (a bad token counts against the address) are all covered. `manage.py axes_reset` (or
# deleting the attempt under "Axes" in the admin) lifts a lockout at once.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses locked-out logins before any password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = "playground.core.security.lockout_parameters"
AXES_CLIENT_IP_CALLABLE = "playground.core.security.client_ip"
AXES_LOCKOUT_CALLABLE = "playground.core.security.lockout_response"
AXES_VERBOSE = False
# /healthz answers everyone with the overall status and each check's ok flag; the details (worker hosts,
# devices, database, loaded models) need a logged-in user or this token (`Authorization: Bearer ...`).
HEALTHZ_TOKEN = envstr("HEALTHZ_TOKEN")

# API keys (/keys/): the limits a new key gets; an admin can change one key's in the Django admin. A
# request over a limit is answered 429 with Retry-After (playground/apikeys/services.py).
API_KEY_REQUESTS_PER_MINUTE = envint("API_KEY_REQUESTS_PER_MINUTE", 60)
API_KEY_CONCURRENT_STREAMS = envint("API_KEY_CONCURRENT_STREAMS", 4)
API_KEY_TOKENS_PER_DAY = envint("API_KEY_TOKENS_PER_DAY", 1_000_000)
if min(API_KEY_REQUESTS_PER_MINUTE, API_KEY_CONCURRENT_STREAMS, API_KEY_TOKENS_PER_DAY) < 1:
    raise ImproperlyConfigured("The API_KEY_* limits are each at least 1.")

# --- Security -------------------------------------------------------------------------------------
# HTTPS=1 (the production default) assumes TLS in front of the site: secure cookies, HSTS, redirects.
HTTPS = envbool("HTTPS", PRODUCTION)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# Joining the browsers' HSTS preload list is a deliberate, hard-to-undo choice for a site's owner
# (SECURE_HSTS_PRELOAD=1), so its absence is not reported as a problem.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
BEHIND_PROXY = envbool("BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Behind a proxy the client's address is the one the proxies add to X-Forwarded-For: PROXY_COUNT
# entries from the right (an entry further left is whatever the client sent, so it is never trusted).
PROXY_COUNT = envint("PROXY_COUNT", 1)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Only this site's own scripts, styles and connections (SiteCSPMiddleware adds the site's own ws:/wss:
# origin to connect-src, which 'self' covers in current browsers but not in every older one). No inline
# script, style or handler anywhere: page scripts read data-* attributes instead.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT", str(DATA_DIR / "static"))).resolve()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# In development whitenoise serves straight from the source folders, so no collectstatic is needed.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Login-link and /healthz tokens in a logged URL are masked (playground/core/logmask.py).
    "filters": {"mask_secrets": {"()": "playground.core.logmask.MaskSecretsFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["mask_secrets"]}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
