# syntax=docker/dockerfile:1
#
# One image for the web server and the Celery workers (docker-compose.yml picks the command).
# The GPU worker builds the same file with a CUDA torch:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
FROM python:3.11-slim-bookworm

# torch comes first and from its own index so that a CPU-only build (a few hundred MB) can be chosen
# instead of the multi-GB CUDA one; pyproject.toml's `torch>=...` then accepts whichever is there.
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin app

WORKDIR /app

RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC"

# Dependencies in their own layer, from pyproject.toml alone with empty packages standing in for the
# source, so that editing the code does not reinstall transformers and friends.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p playground llmcore \
    && touch playground/__init__.py llmcore/__init__.py \
    && pip install . \
    && rm -rf playground llmcore build *.egg-info

COPY manage.py ./
COPY playground/ playground/
COPY llmcore/ llmcore/
COPY templates/ templates/
COPY static/ static/
RUN pip install --no-cache-dir --no-deps --force-reinstall . && rm -rf build *.egg-info

# The default model is baked into the image, outside /data: the named volume mounted on /data would
# hide anything put there at build time. At start `models pull-default` copies it from MODEL_SEED_DIR
# into MODEL_DIR (on the volume) instead of downloading. MODEL_SEED_DIR is set only after this step so
# that the build-time pull fetches the model rather than looking for a seed.
RUN MODEL_DIR=/opt/seed-models DATA_DIR=/tmp/build-data python manage.py models pull-default \
    && rm -rf /tmp/build-data

# Static files are collected at build time (hashed names for whitenoise's manifest storage), again
# outside the /data volume. The secret key only lets settings load; nothing is signed with it.
RUN PRODUCTION=1 SECRET_KEY=build-only-not-secret DATA_DIR=/tmp/build-data STATIC_ROOT=/opt/static \
    python manage.py collectstatic --noinput \
    && rm -rf /tmp/build-data

ENV PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    DATA_DIR=/data \
    MODEL_DIR=/data/models \
    MODEL_SEED_DIR=/opt/seed-models \
    STATIC_ROOT=/opt/static

# A new named volume starts as a copy of the image's folder, owner included, so the non-root user
# can write to /data on first start.
RUN mkdir -p /data && chown app:app /data
USER app

EXPOSE 8000

# `exec` puts daphne in the shell's place, so the SIGTERM of `docker stop` reaches the server itself;
# playground.core.logsafe.daphne is Daphne with login tokens masked in its access log.
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py models pull-default && python manage.py ensure_admin && exec python -m playground.core.logsafe.daphne -b 0.0.0.0 -p 8000 playground.asgi:application"]
