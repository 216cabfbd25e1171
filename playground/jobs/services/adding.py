"""Jobs that add a base model to the store: pull one of the curated models (llmcore.pulls.PULLABLE), or
import a GGUF file or a safetensors folder, uploaded or at a path on the server.

The web side refuses what it can before anything is queued, by the store's own rules and checks (a name
that stays inside the store, no pickle checkpoints, no custom code), so a refusal is a field error where
the user is. The worker then runs the store's import, which writes a hidden folder and renames it into
place only when complete: a failed or cancelled job leaves no model behind. Anyone may pull the curated
models; imports are for admins (an imported model is a base model that everyone sees).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.move import file_move_safe
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile

from llmcore import pulls
from llmcore.jobs import JobContext, JobFailed, Update
from llmcore.store import ModelMeta, StoreError, check_file_names, is_model_file, name_from
from playground.catalog.services import (
    import_model,
    importable_source,
    is_admin,
    name_taken,
    pull_model,
    visible_models,
)
from playground.catalog.templatetags.catalog import human_bytes
from playground.core.services import PlaygroundError
from playground.jobs.models import Job
from playground.jobs.services.jobs import JobError, create_job, output_name_for

UPLOADS = "uploads"  # under DATA_DIR: uploaded files wait here for their import job, one folder each
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


class AddRefused(PlaygroundError):
    """A pull or import refused before it is queued; `field` is the form field it concerns."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message, status)
        self.field = field


# --- pulling ----------------------------------------------------------------------------------------
def queue_pull(user: Any, name: str) -> Job:
    """Queue a pull of one of the curated models (anyone logged in may). While this user's pull of the
    model is queued or running, that job is returned rather than a second one."""
    spec = pulls.PULLABLE.get(name)
    if spec is None:
        known = ", ".join(sorted(pulls.PULLABLE))
        raise AddRefused(f"Unknown model {name!r}; the models that can be pulled: {known}.", status=404)
    if name_taken(name):
        raise AddRefused(f"{name} is in the catalog already.", status=409)
    running = Job.objects.filter(kind=Job.Kind.PULL, output_name=name, status__in=Job.ACTIVE).first()
    if running is not None:
        if running.owner_id == user.pk:
            return running
        raise AddRefused(f"Someone is pulling {name} already; it joins the catalog when done.", status=409)
    return _create(user, Job.Kind.PULL, name, {"source": spec.source_label})


def pullable_rows(user: Any) -> list[dict[str, Any]]:
    """What the Add page lists: each pullable model, whether it is in the catalog already, and this
    user's pull of it while one is queued or running."""
    present = {entry.name for entry in visible_models(user)}
    pulling = Job.objects.filter(owner=user, kind=Job.Kind.PULL, status__in=Job.ACTIVE)
    jobs = {job.output_name: job for job in pulling}
    return [
        {"spec": spec, "present": spec.name in present, "job": jobs.get(spec.name)}
        for spec in pulls.PULLABLE.values()
    ]


# --- importing --------------------------------------------------------------------------------------
def queue_import(
    user: Any, *, name: str = "", path: str = "", files: Sequence[UploadedFile] = (), folder: str = ""
) -> Job:
    """Queue an import (admins only) of uploaded files (one .gguf, or the files of a model folder) or of
    a .gguf file or model folder at an absolute path on the server. `name`: the model's name in the
    store; when empty, from the file's or folder's name (`folder`: an uploaded folder's, which its
    files' names do not carry)."""
    check_may_import(user)
    upload_id = ""
    if files:
        gguf = len(files) == 1 and (files[0].name or "").lower().endswith(".gguf")
        check_upload(files, gguf)
        default = files[0].name if gguf else folder
        name = checked_name(name or (name_from(default) if default else ""))
        upload_id = uuid.uuid4().hex
        source = stage_upload(files, gguf, upload_folder(upload_id))
        shown = f"upload: {source.name if gguf else f'{len(files)} files'}"
    else:
        source = server_source(path)
        name = checked_name(name or name_from(source.name))
        shown = str(source)
    try:
        return _create(
            user, Job.Kind.IMPORT, name, {"source": shown, "path": str(source), "upload": upload_id}
        )
    except BaseException:
        discard_upload(upload_id)
        raise


def _create(user: Any, kind: str, name: str, params: dict[str, Any]) -> Job:
    # No base model: the job makes a base model. devices_ok: it needs no GPU, so it never waits behind a
    # GPU worker's training job.
    return create_job(
        user, kind=kind, method=str(kind), base_model="", params=params, output_name=name, devices_ok=["cpu"]
    )


def check_may_import(user: Any) -> None:
    if not is_admin(user):
        raise AddRefused(
            "Only admins can import models: an imported model is a base model that everyone sees. "
            "Pull one of the listed models, or ask an admin to import yours.",
            status=403,
        )


def checked_name(name: str) -> str:
    """The name asked for, if the store takes it (its own rule: nothing that could leave the store) and
    no model has it nor a job is making it."""
    if not name:
        raise AddRefused("Give the model a name: an uploaded folder's name does not travel.", field="name")
    try:
        return output_name_for("", "import", name)
    except JobError as exc:
        raise AddRefused(str(exc), field="name") from None


def upload_too_big(size: int | None = None) -> str:
    limit = settings.MODEL_UPLOAD_MAX_BYTES
    what = f"This upload is {human_bytes(size)}" if size else "This upload is too big"
    return (
        f"{what}; the limit is {human_bytes(limit)} (MODEL_UPLOAD_MAX_BYTES), and nothing of it was kept. "
        "Put a bigger model on the server and import it by its path."
    )


def upload_folder(upload_id: str) -> Path:
    if not UPLOAD_ID.match(upload_id):
        raise ValueError(f"not an upload id: {upload_id!r}")
    return Path(settings.DATA_DIR) / UPLOADS / upload_id


def check_upload(files: Sequence[UploadedFile], gguf: bool) -> None:
    """The store's checks that need only the files' names and sizes, before a byte is written."""
    total = sum(f.size or 0 for f in files)
    if total > settings.MODEL_UPLOAD_MAX_BYTES:
        raise AddRefused(upload_too_big(total), status=413, field="upload")
    if gguf:
        return
    names = [Path(f.name or "").name for f in files]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        message = (
            f"Two files are named {repeated[0]}: upload one model folder (its subfolders are not imported)."
        )
        raise AddRefused(message, field="upload")
    try:
        check_file_names(names, "the upload")
    except StoreError as exc:
        raise AddRefused(str(exc), field="upload") from None


def stage_upload(files: Sequence[UploadedFile], gguf: bool, folder: Path) -> Path:
    """Keep checked uploaded files (check_upload) in `folder` for their import job, then run the store's
    checks of the folder (config.json). Returns the .gguf file or the folder. Only what an import copies
    is kept: weights, tokenizer, config, and the model card for its license."""
    names = [Path(f.name or "").name for f in files]
    try:
        folder.mkdir(parents=True)
        for upload, file_name in zip(files, names, strict=True):
            if gguf or is_model_file(file_name) or file_name == "README.md":
                _save(upload, folder, file_name)
        return importable_source(folder / names[0] if gguf else folder)
    except StoreError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise AddRefused(str(exc), field="upload") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _save(upload: UploadedFile, folder: Path, file_name: str) -> None:
    target = (folder / file_name).resolve()
    if target.parent != folder.resolve():
        raise StoreError(f"Refused: the file name {file_name!r} would leave its folder.")
    if isinstance(upload, TemporaryUploadedFile):  # already on disk: moved, not copied
        file_move_safe(upload.temporary_file_path(), str(target))
        return
    with target.open("xb") as out:
        for chunk in upload.chunks():
            out.write(chunk)


def server_source(path: str) -> Path:
    text = path.strip()
    if not text:
        raise AddRefused("Choose a .gguf file or a model folder to upload, or give a path on the server.")
    source = Path(text)
    if not source.is_absolute():
        raise AddRefused(
            f"Give an absolute path on the server (one that starts with /), not {text!r}.", field="path"
        )
    if not source.exists():
        raise AddRefused(f"There is nothing at {source} on the server.", field="path")
    try:
        return importable_source(source)
    except StoreError as exc:
        raise AddRefused(str(exc), field="path") from None


def discard_upload(upload_id: str) -> None:
    if upload_id:
        shutil.rmtree(upload_folder(upload_id), ignore_errors=True)


# --- running (in the worker) ------------------------------------------------------------------------
def add_model(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The worker's side of a pull or import job. When it returns, the model is in the store and the
    catalog; when it raises, nothing of it is (JobFailed carries the store's reason). Returns the report.
    An upload is removed once imported; until then (failed, cancelled) it is kept for Resume."""
    upload_id = str(job.params.get("upload") or "")
    stages = pulls.PULL_STAGES if job.kind == Job.Kind.PULL else pulls.IMPORT_STAGES
    say = stage_reporter(ctx, stages)
    try:
        meta = _pull(job, ctx, say) if job.kind == Job.Kind.PULL else _import(job, say)
    except StoreError as exc:
        raise JobFailed(str(exc)) from None
    discard_upload(upload_id)
    ctx.report(Update(step=len(stages), total=len(stages), log=f"{meta.name} is in the catalog."))
    facts = meta.facts
    return {"model": meta.name, "sha256": meta.sha256, "size_bytes": facts.size_bytes if facts else None}


def _pull(job: Job, ctx: JobContext, say: Callable[[str], None]) -> ModelMeta:
    meta, added = pull_model(job.output_name, progress=say)
    if not added:
        ctx.log(f"{meta.name} was in the store already (pulled by another job meanwhile).")
    return meta


def _import(job: Job, say: Callable[[str], None]) -> ModelMeta:
    if not is_admin(job.owner):
        raise JobFailed("Only admins can import models, and the one who queued this is no longer an admin.")
    source = Path(str(job.params.get("path") or ""))
    if not source.is_absolute() or not source.exists():
        raise JobFailed(f"{source} is gone (an upload is kept until its import succeeds); import it again.")
    say(f"Importing {source.name} as {job.output_name}")
    return import_model(source, job.output_name, progress=say)


def stage_reporter(ctx: JobContext, stages: tuple[tuple[str, tuple[str, ...]], ...]) -> Callable[[str], None]:
    """A progress callback for llmcore's pull and import messages: each stage's first message moves the
    bar (stages done of all), every message goes to the log, and a cancel is honoured between stages."""

    def say(message: str) -> None:
        ctx.check_cancelled()
        stage = pulls.stage_of(message, stages)
        if stage is None:
            ctx.log(message)
        else:
            ctx.report(Update(step=stage.done, total=stage.total, phase=stage.name, log=message))

    return say
