"""docker-compose.yml, the Dockerfile, .env.example and settings.py must fit together.

No Docker engine is needed: the files are parsed and checked against each other, so a renamed
variable, a volume mounted in the wrong place or a port that drifted shows up here, not at deploy time.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("web", "worker", "worker-gpu")
WORKERS = ("worker", "worker-gpu")
# Set by the image for Python and the Hugging Face libraries, not by settings.py.
IMAGE_ONLY_VARIABLES = {"HF_HUB_OFFLINE", "PYTHONUNBUFFERED"}


# --- Parsing helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: RUN, ENV, CMD...
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    return instructions


def strip_run_flags(args: str) -> str:
    """The shell command of a RUN, without BuildKit flags such as --mount=..."""
    while args.startswith("--"):
        _, _, args = args.partition(" ")
        args = args.lstrip()
    return args


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default}, ${VAR:?error} and ${VAR} as they read with an empty .env."""

    def replace(match: re.Match[str]) -> str:
        operator, operand = match.group(2), match.group(3)
        if operator in (":-", "-"):
            return operand
        if operator in (":?", "?"):
            return "set-by-user"
        return ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}", replace, value)


def as_dict(environment: Any) -> dict[str, str]:
    if environment is None:
        return {}
    if isinstance(environment, list):
        pairs = (item.partition("=") for item in environment)
        return {name: value for name, _, value in pairs}
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def command_text(command: Any) -> str:
    return " ".join(command) if isinstance(command, list) else str(command)


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return command_text(test[1:] if isinstance(test, list) else test)


# --- Fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def image_env(dockerfile: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in dockerfile:
        if instruction.keyword != "ENV":
            continue
        words = shlex.split(instruction.args)
        if "=" not in words[0]:  # the legacy `ENV NAME value` form
            env[words[0]] = " ".join(words[1:])
            continue
        env.update(word.split("=", 1) for word in words)
    return env


@pytest.fixture(scope="module")
def image_args(dockerfile: list[Instruction]) -> dict[str, str]:
    args: dict[str, str] = {}
    for instruction in dockerfile:
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            args[name] = shlex.split(default)[0] if default else ""
    return args


@pytest.fixture(scope="module")
def image_cmd(dockerfile: list[Instruction]) -> str:
    cmds = [instruction.args for instruction in dockerfile if instruction.keyword == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    cmd = cmds[-1]
    return command_text(json.loads(cmd)) if cmd.startswith("[") else cmd


@pytest.fixture(scope="module")
def runs(dockerfile: list[Instruction]) -> list[str]:
    return [strip_run_flags(i.args) for i in dockerfile if i.keyword == "RUN"]


@pytest.fixture(scope="module")
def settings_text() -> str:
    return (ROOT / "playground" / "settings.py").read_text()


@pytest.fixture(scope="module")
def env_example_lines() -> list[str]:
    return (ROOT / ".env.example").read_text().splitlines()


@pytest.fixture(scope="module")
def env_example_names(env_example_lines: list[str]) -> set[str]:
    """Every variable the example mentions, set or left commented out."""
    pattern = re.compile(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=")
    return {m.group(1) for line in env_example_lines if (m := pattern.match(line))}


def read_by_settings(name: str, settings_text: str) -> bool:
    return re.search(rf"[\"']{re.escape(name)}[\"']", settings_text) is not None


def web_command(services: dict[str, Any], image_cmd: str) -> str:
    command = services["web"].get("command")
    return command_text(command) if command else image_cmd


def daphne_port(command: str) -> str:
    match = re.search(r"daphne\b.*?(?:-p|--port)[ =](\d+)", command)
    assert match, f"daphne has no port in {command!r}"
    return match.group(1)


# --- Services -------------------------------------------------------------------------------------


def test_compose_defines_postgres_redis_web_and_both_workers(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", "web", "worker", "worker-gpu"} <= set(services)


def test_worker_gpu_runs_only_in_the_gpu_profile(services: dict[str, Any]) -> None:
    assert services["worker-gpu"].get("profiles") == ["gpu"]
    # Everything else starts with a plain `docker compose up` on a machine without a GPU.
    for name, service in services.items():
        if name != "worker-gpu":
            assert not service.get("profiles"), f"{name} would not start by default"


def test_worker_gpu_reserves_an_nvidia_device(services: dict[str, Any]) -> None:
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device.get("driver") == "nvidia"
        and "gpu" in device.get("capabilities", [])
        and (device.get("count") == "all" or int(device.get("count", 0)) >= 1 or device.get("device_ids"))
        for device in devices
    ), devices
    assert as_dict(services["worker-gpu"]["environment"])["MODEL_DEVICE"] == "cuda"


def test_cpu_worker_is_told_to_use_the_cpu(services: dict[str, Any]) -> None:
    assert as_dict(services["worker"]["environment"])["MODEL_DEVICE"] == "cpu"
    assert "deploy" not in services["worker"]


def test_worker_gpu_builds_torch_from_a_cuda_index(
    services: dict[str, Any], image_args: dict[str, str]
) -> None:
    build = services["worker-gpu"]["build"]
    build_args = as_dict(build["args"])
    # Every build arg must be one the Dockerfile declares, or Docker ignores it with a mere warning.
    assert set(build_args) <= set(image_args), set(build_args) - set(image_args)
    assert re.search(r"/whl/cu\d+", build_args["TORCH_INDEX_URL"])
    assert "/whl/cpu" in image_args["TORCH_INDEX_URL"]
    # The CUDA image needs its own tag, or it and the CPU image would overwrite each other.
    assert services["worker-gpu"]["image"] != services["worker"]["image"]


def test_redis_persists_with_an_append_only_file(services: dict[str, Any]) -> None:
    words = command_text(services["redis"]["command"]).split()
    assert words[words.index("--appendonly") + 1] == "yes"
    assert any(str(volume).endswith(":/data") for volume in services["redis"]["volumes"])


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        healthcheck = service.get("healthcheck", {})
        assert healthcheck.get("test") not in (None, [], ["NONE"]), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} turns its healthcheck off"
    assert "pg_isready" in healthcheck_text(services["postgres"])
    assert "redis-cli ping" in healthcheck_text(services["redis"])


def test_web_healthcheck_fetches_healthz_on_the_port_daphne_serves(
    services: dict[str, Any], image_cmd: str
) -> None:
    check = healthcheck_text(services["web"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)/healthz", check)
    assert match, check
    assert match.group(1) == daphne_port(web_command(services, image_cmd))
    assert "urllib" in check  # the slim image has no curl or wget


def test_allowed_hosts_default_lets_the_web_healthcheck_in(services: dict[str, Any]) -> None:
    # The healthcheck sends Host: 127.0.0.1; Django answers 400 to a host it does not allow.
    hosts = interpolate(as_dict(services["web"]["environment"])["ALLOWED_HOSTS"]).split(",")
    assert "127.0.0.1" in hosts


def test_worker_healthchecks_ping_their_own_celery_node(services: dict[str, Any]) -> None:
    for name in WORKERS:
        check = healthcheck_text(services[name])
        assert "celery -A playground inspect ping" in check, name
        # $$ keeps compose from interpolating, so the container's own HOSTNAME is used.
        assert "$$HOSTNAME" in check, name


def test_web_and_workers_wait_for_healthy_postgres_and_redis(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        for dependency in ("postgres", "redis"):
            assert depends_on[dependency]["condition"] == "service_healthy", (name, dependency)


# --- Volumes and data -----------------------------------------------------------------------------


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> volume name, for the named volumes a service mounts."""
    result = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = str(volume).split(":")[:2]
        if source and not source.startswith((".", "/", "~")):
            result[target] = source
    return result


def test_web_and_workers_share_one_data_volume_at_their_data_dir(
    services: dict[str, Any], compose: dict[str, Any], image_env: dict[str, str]
) -> None:
    data_volumes = set()
    for name in APP_SERVICES:
        env = as_dict(services[name]["environment"])
        data_dir = env.get("DATA_DIR", image_env["DATA_DIR"])
        assert data_dir in mounts(services[name]), f"{name} does not mount a volume at {data_dir}"
        data_volumes.add(mounts(services[name])[data_dir])
        # Models must persist and be shared too: a worker's fine-tuned model is served by the web.
        model_dir = env.get("MODEL_DIR", image_env["MODEL_DIR"])
        assert model_dir.startswith(data_dir.rstrip("/") + "/"), (name, model_dir)
    assert len(data_volumes) == 1, data_volumes
    assert data_volumes <= set(compose["volumes"])


def test_every_named_volume_is_declared_at_top_level(
    services: dict[str, Any], compose: dict[str, Any]
) -> None:
    declared = set(compose.get("volumes") or {})
    used = {volume for service in services.values() for volume in mounts(service).values()}
    assert used == declared
    assert {"data", "pgdata", "redisdata"} <= declared
    assert mounts(services["postgres"]).get("/var/lib/postgresql/data") == "pgdata"


def test_image_data_dir_matches_compose(services: dict[str, Any], image_env: dict[str, str]) -> None:
    env = as_dict(services["web"]["environment"])
    assert image_env["DATA_DIR"] == env["DATA_DIR"]
    assert image_env["MODEL_DIR"] == env["MODEL_DIR"]


def test_seed_models_and_static_files_live_outside_the_data_volume(
    services: dict[str, Any], image_env: dict[str, str]
) -> None:
    # Anything the image puts under a mount point is hidden by the volume mounted there.
    mount_points = {path for name in APP_SERVICES for path in mounts(services[name])}
    for name in ("MODEL_SEED_DIR", "STATIC_ROOT"):
        path = image_env[name]
        for mount_point in mount_points:
            assert not (path + "/").startswith(mount_point.rstrip("/") + "/"), (name, path, mount_point)


# --- URLs -----------------------------------------------------------------------------------------


def test_database_url_points_at_the_postgres_service_with_its_user_and_database(
    services: dict[str, Any],
) -> None:
    postgres = as_dict(services["postgres"]["environment"])
    for name in APP_SERVICES:
        raw = as_dict(services[name]["environment"])["DATABASE_URL"]
        url = urlsplit(interpolate(raw))
        assert url.scheme in ("postgres", "postgresql"), raw
        assert url.hostname == "postgres"
        assert (url.port or 5432) == 5432
        assert url.username == postgres["POSTGRES_USER"]
        assert url.path.lstrip("/") == postgres["POSTGRES_DB"]
        # The same expression, default included, or the two would disagree on an empty .env.
        raw_password = raw.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
        assert raw_password == postgres["POSTGRES_PASSWORD"]


def test_redis_url_points_at_the_redis_service(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        url = urlsplit(interpolate(as_dict(services[name]["environment"])["REDIS_URL"]))
        assert url.scheme == "redis"
        assert url.hostname == "redis"
        assert (url.port or 6379) == 6379


# --- Commands -------------------------------------------------------------------------------------


def test_web_serves_the_asgi_app_with_daphne_on_the_published_port(
    services: dict[str, Any], image_cmd: str, dockerfile: list[Instruction]
) -> None:
    command = web_command(services, image_cmd)
    assert re.search(r"daphne\b.*\bplayground\.asgi:application\b", command), command
    assert re.search(r"daphne\b.*-b[ =]0\.0\.0\.0", command), "daphne must listen beyond localhost"
    port = daphne_port(command)
    published = {str(p).rsplit(":", 1)[-1] for p in services["web"]["ports"]}
    assert port in published
    exposed = {i.args.split("/")[0] for i in dockerfile if i.keyword == "EXPOSE"}
    assert port in exposed


def test_web_applies_migrations_and_seeds_before_it_serves(services: dict[str, Any], image_cmd: str) -> None:
    command = web_command(services, image_cmd)
    steps = ["manage.py migrate", "manage.py models pull-default", "manage.py ensure_admin", "daphne"]
    positions = [command.find(step) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions), "each step must come before the server starts"
    # A failed migration must stop the start, not be skipped on the way to daphne.
    assert ";" not in command


def test_workers_run_a_celery_worker_for_the_playground_app(services: dict[str, Any]) -> None:
    for name in WORKERS:
        command = command_text(services[name]["command"])
        assert re.match(r"celery -A playground worker\b", command), command
        # Jobs hold a whole model in memory: one at a time per worker.
        assert re.search(r"--concurrency[ =]1\b", command), command


# --- Environment variables ------------------------------------------------------------------------


def test_every_variable_compose_sets_is_read_by_settings(
    services: dict[str, Any], settings_text: str
) -> None:
    for name in APP_SERVICES:
        for variable in as_dict(services[name]["environment"]):
            if variable.startswith("POSTGRES_") or variable in IMAGE_ONLY_VARIABLES:
                continue
            assert read_by_settings(variable, settings_text), f"{name} sets {variable}; nothing reads it"


def test_every_variable_in_env_example_is_read_by_settings_or_used_by_compose(
    env_example_names: set[str], settings_text: str, compose_text: str
) -> None:
    for variable in env_example_names:
        used_by_compose = re.search(rf"\$\{{{variable}\b", compose_text) is not None
        assert read_by_settings(variable, settings_text) or used_by_compose, variable


def test_every_variable_settings_reads_is_documented_in_env_example(
    env_example_names: set[str], settings_text: str
) -> None:
    pattern = r"(?:env(?:str|int|bool|list)|os\.environ\.get|os\.getenv)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']"
    read = set(re.findall(pattern, settings_text))
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= read  # the pattern still matches settings.py
    assert read - env_example_names == set()


def test_env_example_ships_no_secret_key(env_example_lines: list[str]) -> None:
    values = dict(line.split("=", 1) for line in env_example_lines if re.match(r"^[A-Z][A-Z0-9_]*=", line))
    assert values["SECRET_KEY"] == ""
    assert values.get("POSTGRES_PASSWORD", "") == ""


def test_compose_refuses_to_start_without_a_secret_key(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = as_dict(services[name]["environment"])
        assert env["PRODUCTION"] == "1"
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env["SECRET_KEY"]), env["SECRET_KEY"]


# --- Image ----------------------------------------------------------------------------------------


def test_dockerfile_installs_torch_from_the_build_args_before_the_project(
    image_args: dict[str, str], runs: list[str]
) -> None:
    assert image_args["TORCH_SPEC"].startswith("torch==")
    torch_run = next(i for i, run in enumerate(runs) if "$TORCH_SPEC" in run or "${TORCH_SPEC}" in run)
    assert "TORCH_INDEX_URL" in runs[torch_run]
    project_run = next(i for i, run in enumerate(runs) if re.search(r"pip install[^&]* \.(\s|$)", run))
    assert torch_run < project_run


def test_dockerfile_pulls_the_default_model_at_build_time_into_the_seed_dir(
    runs: list[str], image_env: dict[str, str], dockerfile: list[Instruction]
) -> None:
    pull = next(run for run in runs if "manage.py models pull-default" in run)
    assert f"MODEL_DIR={image_env['MODEL_SEED_DIR']} " in pull
    assert image_env["HF_HUB_OFFLINE"] == "1"
    # Offline mode and the seed dir only from after the pull, so the build-time pull downloads.
    keywords = [(i.keyword, i.args) for i in dockerfile]
    pull_at = next(n for n, (k, a) in enumerate(keywords) if k == "RUN" and "pull-default" in a)
    seed_at = next(n for n, (k, a) in enumerate(keywords) if k == "ENV" and "MODEL_SEED_DIR=" in a)
    assert pull_at < seed_at


def test_static_files_are_collected_where_the_image_serves_them_from(
    runs: list[str], image_env: dict[str, str]
) -> None:
    collect = next(run for run in runs if "manage.py collectstatic" in run)
    assert f"STATIC_ROOT={image_env['STATIC_ROOT']} " in collect
    # Production settings choose the hashed manifest storage the running image expects.
    assert "PRODUCTION=1" in collect


def test_image_runs_unbuffered_and_offline(image_env: dict[str, str]) -> None:
    assert image_env["PYTHONUNBUFFERED"] == "1"
    assert image_env["HF_HUB_OFFLINE"] == "1"


def test_image_runs_as_a_non_root_user(dockerfile: list[Instruction]) -> None:
    users = [i.args for i in dockerfile if i.keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_copies_what_pip_install_needs(dockerfile: list[Instruction]) -> None:
    copied = set()
    for instruction in dockerfile:
        if instruction.keyword == "COPY":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            copied.update(w.rstrip("/") for w in words[:-1])
    pyproject = (ROOT / "pyproject.toml").read_text()
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', pyproject, re.MULTILINE)
    assert readme
    assert readme.group(1) in copied
    assert {"pyproject.toml", "manage.py", "playground", "llmcore", "templates", "static"} <= copied

    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in copied:
        assert not any(fnmatch(path, pattern) for pattern in ignored), f"{path} is in .dockerignore"


def test_dockerignore_keeps_secrets_and_local_data_out_of_the_build() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".git", ".venv", "var"} <= ignored
