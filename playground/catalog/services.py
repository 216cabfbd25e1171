"""The catalog: the model store on disk, mirrored into ModelEntry rows with lineage."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from llmcore import pulls
from llmcore.remote import RemoteError, RemoteServer, check_base_url
from llmcore.remote import list_models as served_models
from llmcore.store import ModelMeta, ModelStore, StoreError, check_file_names, check_importable, validate_name
from playground.catalog.models import ModelEntry, RemoteEndpoint
from playground.core.services import PlaygroundError, model_cache, model_store

DEFAULT_MODEL = pulls.DEFAULT_MODEL  # the model `make run` pulls and every page starts with
RESERVED_NAMES = frozenset({"add"})  # catalog pages at /models/<this>/, where a model's page would be

__all__ = [
    "DEFAULT_MODEL",
    "default_model_of",
    "text_models",
    "chat_models",
    "check_local",
    "local_models",
    "name_taken",
    "NeedsWeights",
    "RemoteRefused",
    "add_remote",
    "check_may_add",
    "server_for",
    "Dependents",
    "ModelNotFound",
    "RemoveRefused",
    "SharingRefused",
    "StoreError",
    "dependents",
    "get_visible_model",
    "import_model",
    "importable_source",
    "is_admin",
    "list_models",
    "may_manage",
    "check_may_remove",
    "may_remove",
    "may_see",
    "owner_extra",
    "pull_model",
    "remove_model",
    "remove_model_as",
    "set_shared",
    "sync_catalog",
    "visible_models",
]


# Inside one request (CatalogSnapshot middleware), the catalog is read against the store once: a page
# whose forms list the models in several fields reads the store's folders once, not once per field.
_request_snapshot: contextvars.ContextVar[dict[str, list[ModelEntry]] | None] = contextvars.ContextVar(
    "catalog_snapshot", default=None
)


@contextlib.contextmanager
def one_snapshot() -> Iterator[None]:
    """Within this block, sync_catalog() syncs once and then answers from that snapshot; a change made
    here (import, pull, remove, share) takes a fresh one."""
    token = _request_snapshot.set({})
    try:
        yield
    finally:
        _request_snapshot.reset(token)


def sync_catalog(fresh: bool = False) -> list[ModelEntry]:
    """Make the catalog rows match the store: add, update and drop rows; link parents.

    Called on every catalog page view, so it writes only when the store has changed; within one request
    (one_snapshot), only the first call (or one with `fresh`, after a change) reads the store.
    """
    holder = _request_snapshot.get()
    if holder is not None and not fresh and "entries" in holder:
        return list(holder["entries"])
    entries = _sync()
    if holder is not None:
        holder["entries"] = entries
    return list(entries)


def _sync() -> list[ModelEntry]:
    entries = {e.name: e for e in ModelEntry.objects.select_related("parent", "owner")}
    remote = {name for name, e in entries.items() if e.is_remote}  # no folder in the store: kept
    # A store folder under a remote model's name (copied in by hand) is not listed over it.
    metas = {meta.name: meta for meta in model_store().list() if meta.name not in remote}
    stale = [name for name in entries if name not in metas and name not in remote]
    changed = [m for m in metas.values() if _differs(entries.get(m.name), m)]
    if stale or changed:
        with transaction.atomic():
            ModelEntry.objects.filter(name__in=stale).delete()
            for meta in changed:
                entry, _ = ModelEntry.objects.update_or_create(name=meta.name, defaults=_fields(meta))
                entries[meta.name] = entry
            for meta in metas.values():
                entry = entries[meta.name]
                parent = entries.get(meta.parent) if meta.parent else None
                if entry.parent_id != (parent.pk if parent else None):
                    entry.parent = parent
                    entry.save(update_fields=["parent"])
    return sorted((entries[name] for name in [*metas, *remote]), key=lambda e: e.name)


def _differs(entry: ModelEntry | None, meta: ModelMeta) -> bool:
    if entry is None:
        return True
    parent = entry.parent.name if entry.parent else None
    created = datetime.fromisoformat(meta.created)
    # The facts and extras count too: a model whose facts were re-read (newer facts) is updated in place.
    return (entry.sha256, entry.created, parent, entry.meta) != (
        meta.sha256,
        created,
        meta.parent,
        _meta_json(meta),
    )


def _meta_json(meta: ModelMeta) -> dict[str, object]:
    spec = pulls.PULLABLE.get(meta.name)
    pulled = spec is not None and meta.source == spec.source_label  # ModelEntry.kind: "base"
    return {"extra": meta.extra, "facts": asdict(meta.facts) if meta.facts else None, "pulled": pulled}


def _fields(meta: ModelMeta) -> dict[str, object]:
    facts = meta.facts
    if facts is None:
        raise StoreError(f"{meta.name} has no architecture facts; re-import it.")
    return {
        "source": meta.source[:500],
        "license": meta.license[:100],
        "method": meta.method[:50],
        "sha256": meta.sha256,
        "created": datetime.fromisoformat(meta.created),
        "family": facts.family,
        "architecture": facts.architecture,
        "parameters": facts.parameters,
        "layers": facts.layers,
        "attention_heads": facts.attention_heads,
        "kv_heads": facts.kv_heads,
        "hidden_size": facts.hidden_size,
        "vocab_size": facts.vocab_size,
        "context_length": facts.context_length,
        "dtype": facts.dtype,
        "size_bytes": facts.size_bytes,
        "is_encoder_only": facts.is_encoder_only,
        "attention": facts.attention or ("bidirectional" if facts.is_encoder_only else "causal"),
        "sliding_window": facts.sliding_window,
        "sliding_window_layers": facts.sliding_window_layers,
        "head_dim": facts.head_dim,
        "intermediate_size": facts.intermediate_size,
        "activation": (facts.activation or "")[:40],
        "tie_word_embeddings": facts.tie_word_embeddings,
        "positional": (facts.positional or "")[:40],
        "rope_theta": facts.rope_theta,
        "rope_theta_sliding": facts.rope_theta_sliding,
        "meta": _meta_json(meta),
        **dict(zip(("owner", "shared"), _ownership(meta), strict=True)),
    }


def _ownership(meta: ModelMeta) -> tuple[Any, bool]:
    """(owner, shared) as the store records them. Base models have neither key: shared, no owner. A
    job's output written before owners were recorded belongs to its job's owner, if that job is still
    here; a made model whose owner cannot be found is for admins only (owner None, not shared)."""
    extra = meta.extra
    shared = extra.get("shared") is True
    owner_id = extra.get("owner_id")
    if isinstance(owner_id, int) and not isinstance(owner_id, bool):
        # The name must match too: after a database rebuild an id may belong to somebody else.
        owner = get_user_model().objects.filter(pk=owner_id, username=extra.get("owner")).first()
        return owner, shared
    if "owner_id" in extra:
        return None, shared
    job_id = extra.get("job")
    if job_id is None:
        return None, True
    job = apps.get_model("jobs", "Job").objects.filter(pk=job_id, output_name=meta.name).first()
    return (job.owner if job else None), shared


def list_models() -> list[ModelEntry]:
    """Every model, whoever may see it: for the command line (an admin's tool), not for pages."""
    return sync_catalog()


# --- who may see and use a model --------------------------------------------------------------------
class ModelNotFound(PlaygroundError, LookupError):
    """No such model, or one this user may not see: the two read the same, so a private model's name is
    never confirmed to someone it is not shared with."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No model named {name!r} in the catalog.", status=404)
        self.name = name


class SharingRefused(PlaygroundError, PermissionError):
    """The user may see the model but not change who else sees it; the message says why."""

    status = 403


def is_admin(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


def may_see(user: Any, entry: ModelEntry) -> bool:
    return entry.shared or may_manage(user, entry)


def may_manage(user: Any, entry: ModelEntry) -> bool:
    """May change who sees the model (and see how it was made): its owner and admins."""
    if is_admin(user):
        return True
    return entry.owner_id is not None and getattr(user, "pk", None) == entry.owner_id


def is_made(entry: ModelEntry) -> bool:
    """Made here by a job (so owned and shareable), not imported or pulled (a base model)."""
    return "owner_id" in entry.extra or "job" in entry.extra


def visible_models(user: Any) -> list[ModelEntry]:
    """Every model this user may see and use, by name: what each page lists and each form accepts."""
    return [e for e in sync_catalog() if may_see(user, e)]


def local_models(user: Any) -> list[ModelEntry]:
    """The visible models whose weights are here (not remote ones): what the inspect tools offer."""
    return [e for e in visible_models(user) if not e.is_remote]


def text_models(user: Any) -> list[ModelEntry]:
    """The visible local models that generate text (encoder-only ones cannot chat, be fine-tuned or
    decode; remote ones have no weights here): what the jobs and Accelerate pages offer."""
    return [e for e in local_models(user) if not e.is_encoder_only]


def chat_models(user: Any) -> list[ModelEntry]:
    """The models this user may chat with: the local text models and the remote ones."""
    return [e for e in visible_models(user) if e.is_remote or not e.is_encoder_only]


class NeedsWeights(PlaygroundError):
    """A page or job that reads a model's weights was asked for a remote model: it says so."""

    status = 400


def check_local(entry: ModelEntry, what: str) -> ModelEntry:
    """The entry, if its weights are here; NeedsWeights naming `what` needs them when it is remote."""
    if entry.is_remote:
        host = entry.meta["remote"].get("host") or "another server"
        raise NeedsWeights(
            f"{entry.name} is a remote model, served by {host}: its weights are not on this server, so "
            f"{what} cannot use it. It can chat."
        )
    return entry


def name_taken(name: str) -> bool:
    """A model of this name is in the store or the catalog (a remote model has no folder)."""
    return model_store().exists(name) or ModelEntry.objects.filter(name=name).exists()


def default_model_of(names: list[str]) -> str | None:
    """The model a page starts with: the default model when it is among `names`, else the first."""
    return DEFAULT_MODEL if DEFAULT_MODEL in names else (names[0] if names else None)


def get_visible_model(user: Any, name: str) -> ModelEntry:
    """The catalog model of that name if this user may see it; else ModelNotFound (as if it were not
    there). Syncs with the store only when the name is not in the catalog yet (a model just imported)."""
    query = ModelEntry.objects.select_related("parent", "owner")
    entry = query.filter(name=name).first()
    if entry is None:
        sync_catalog(fresh=True)
        entry = query.filter(name=name).first()
    if entry is None or not may_see(user, entry):
        raise ModelNotFound(name)
    return entry


def owner_extra(user: Any) -> dict[str, object]:
    """What a job writes into its model's meta.json: whose model it is, private until they share it."""
    return {"owner_id": user.pk, "owner": user.get_username(), "shared": False}


def set_shared(user: Any, name: str, shared: bool) -> ModelEntry:
    """Share a model with everyone or make it private again; owner and admins only. Written into the
    store's meta.json first, so the catalog rebuilt from the store agrees."""
    entry = get_visible_model(user, name)
    if not is_made(entry):
        raise SharingRefused(f"{entry.name} is a base model: it is shared with everyone.")
    if not may_manage(user, entry):
        raise SharingRefused(f"Only the owner of {entry.name} or an admin can change who sees it.")
    if entry.shared != shared:
        model_store().update_extra(entry.name, {"shared": shared})
        sync_catalog(fresh=True)
    return ModelEntry.objects.select_related("parent", "owner").get(pk=entry.pk)


def importable_source(path: Path | str) -> Path:
    """The GGUF file or model folder at `path` if the store would import it, checked before a byte is
    copied (no pickles, no custom code, no links); else StoreError with the reason."""
    source = Path(path).expanduser()
    if source.is_file() and source.suffix.lower() == ".gguf":
        return source
    if source.is_dir():
        check_importable(source)
        return source
    if source.is_file():
        check_file_names([source.name], str(source))  # a pickle checkpoint is refused as one
    raise StoreError(f"{source} is neither a .gguf file nor a model folder.")


def import_model(
    path: Path | str, name: str | None = None, progress: Callable[[str], None] | None = None
) -> ModelMeta:
    """Import a GGUF file or a Hugging Face folder with safetensors into the store and the catalog."""
    source = importable_source(path)
    if source.is_file():
        meta = model_store().import_gguf(source, name, progress=progress)
    else:
        meta = model_store().import_folder(source, name)
    sync_catalog(fresh=True)
    return meta


def pull_model(name: str, progress: Callable[[str], None] | None = None) -> tuple[ModelMeta, bool]:
    seed_dir = getattr(settings, "MODEL_SEED_DIR", None)
    seed = ModelStore(seed_dir) if seed_dir else None
    result = pulls.pull(name, model_store(), settings.DOWNLOAD_CACHE_DIR, seed_store=seed, progress=progress)
    sync_catalog(fresh=True)
    return result


def remove_model(name: str) -> None:
    store = model_store()
    children = [m.name for m in store.list() if m.parent == name]
    if children:
        raise StoreError(f"{name!r} is the parent of {', '.join(children)}; remove those first.")
    store.remove(name)
    model_cache().forget(name)
    sync_catalog(fresh=True)


def pullable_models() -> list[pulls.PullSpec]:
    return list(pulls.PULLABLE.values())


# --- removing from the site -------------------------------------------------------------------------
class RemoveRefused(PlaygroundError):
    """A model this user may not remove, or not yet (something depends on it); the message says which."""

    status = 409


def may_remove(user: Any, entry: ModelEntry) -> bool:
    """A made model: its owner and admins. A base model (everyone's): admins only."""
    return may_manage(user, entry) if is_made(entry) else is_admin(user)


def check_may_remove(user: Any, entry: ModelEntry) -> None:
    """RemoveRefused (403) naming who may remove the model, unless this user may."""
    if not may_remove(user, entry):
        who = "its owner or an admin" if is_made(entry) else "an admin"
        raise RemoveRefused(f"Only {who} can remove {entry.name}.", status=403)


@dataclass
class Dependents:
    """What depends on a model, as one user may know it. Models made from it block its removal (others'
    private ones are counted, not named), and so do jobs queued or running on it; the user's own chats and
    jobs that use it are listed, other people's counted."""

    children: list[str]
    hidden_children: int
    active_jobs: int
    jobs: list[Any]
    chats: list[Any]
    others_jobs: int
    others_chats: int

    @property
    def blocker(self) -> str:
        """Why the model cannot be removed now, or ''."""
        if self.children or self.hidden_children:
            names = self.children + (
                [f"{self.hidden_children} private model(s)"] if self.hidden_children else []
            )
            return f"Models were made from it ({', '.join(names)}); remove those first."
        if self.active_jobs:
            return f"{self.active_jobs} job(s) queued or running use it; wait for them or cancel them first."
        return ""


def dependents(user: Any, entry: ModelEntry) -> Dependents:
    children = list(ModelEntry.objects.filter(parent=entry))
    job_model = apps.get_model("jobs", "Job")
    jobs = job_model.objects.filter(Q(base_model=entry.name) | Q(params__teacher_model=entry.name))
    chats = apps.get_model("chat", "Conversation").objects.filter(model_name=entry.name)
    return Dependents(
        children=[c.name for c in children if may_see(user, c)],
        hidden_children=sum(1 for c in children if not may_see(user, c)),
        active_jobs=jobs.filter(status__in=job_model.ACTIVE).count(),
        jobs=list(jobs.filter(owner=user)[:50]),
        chats=list(chats.filter(owner=user)[:50]),
        others_jobs=jobs.exclude(owner=user).count(),
        others_chats=chats.exclude(owner=user).count(),
    )


def remove_model_as(user: Any, name: str) -> None:
    """Remove a model from the store and the catalog for this user: ModelNotFound when they may not see
    it, RemoveRefused when they may not remove it or something depends on it."""
    entry = get_visible_model(user, name)
    check_may_remove(user, entry)
    blocker = dependents(user, entry).blocker
    if blocker:
        raise RemoveRefused(f"{entry.name} cannot be removed yet. {blocker}")
    if entry.is_remote:  # nothing in the store: the entry and its endpoint (key included) go
        entry.delete()
        sync_catalog(fresh=True)
        return
    remove_model(entry.name)


# --- remote models ---------------------------------------------------------------------------------
# An OpenAI-compatible server's model added by an admin (kind "remote"): a ModelEntry with a
# RemoteEndpoint and no folder in the store. The catalog lists it, the chat talks to it
# (playground.chat.services.remote_turns), and every page that reads weights says it cannot
# (check_local). Its base URL is checked when it is added and again each time it is used, so taking a
# host off REMOTE_MODEL_HOSTS stops its models at once.
MAX_REMOTE_MODEL_ID = 200


class RemoteRefused(PlaygroundError):
    """What an admin asked for cannot be added; `field` names the form field it concerns ('' for all)."""

    def __init__(self, message: str, field: str = "", status: int = 400) -> None:
        super().__init__(message, status=status)
        self.field = field


def check_may_add(user: Any) -> None:
    if not is_admin(user):
        raise RemoteRefused(
            "Only an admin can add a remote server: its models are shared with everyone.", status=403
        )


def add_remote(user: Any, *, name: str, base_url: str, model: str, api_key: str = "") -> ModelEntry:
    """Check everything, ask the server which models it serves, and add `model` of it as `name`.

    RemoteRefused (with the field) when the name is taken or invalid, the URL is not allowed, or the
    server cannot be read or does not serve that model. The key is used for the check and kept."""
    check_may_add(user)
    try:
        name = validate_name(name.strip())
    except StoreError as exc:
        raise RemoteRefused(str(exc), field="name") from None
    if name in RESERVED_NAMES:
        raise RemoteRefused(
            f"{name!r} is the name of a catalog page (/models/{name}/); pick another.", "name"
        )
    if name_taken(name):
        raise RemoteRefused(f"A model named {name!r} is in the catalog already; pick another.", "name", 409)
    model = model.strip()
    if not model or len(model) > MAX_REMOTE_MODEL_ID:
        raise RemoteRefused(f"Give the server's model id (1 to {MAX_REMOTE_MODEL_ID} characters).", "model")
    try:
        url = check_base_url(base_url, settings.REMOTE_MODEL_HOSTS)
    except RemoteError as exc:
        raise RemoteRefused(str(exc), field="base_url") from None
    server = RemoteServer(url, model, api_key.strip())
    try:
        served = served_models(server)
    except RemoteError as exc:
        raise RemoteRefused(f"Could not list the server's models: {exc}", field="base_url") from None
    info = next((m for m in served if m.id == model), None)
    if info is None:
        ids = ", ".join(m.id for m in served[:20]) or "none"
        raise RemoteRefused(f"{server.host} does not serve {model!r}; it serves: {ids}.", field="model")
    try:
        with transaction.atomic():
            entry = ModelEntry.objects.create(
                name=name,
                source=f"remote: {url} ({model})"[:500],
                license="as the server says",
                method="remote",
                sha256="",
                created=timezone.now(),
                family="remote",
                architecture="served elsewhere",
                parameters=0,
                dtype="",
                size_bytes=0,
                context_length=info.context_length,
                meta={"remote": {"host": server.host, "model": model, "base_url": url}},
                shared=True,  # like a base model: an admin adds it for everyone
            )
            RemoteEndpoint.objects.create(
                entry=entry, base_url=url, remote_model=model, api_key=server.api_key, added_by=user
            )
    except IntegrityError:  # the same name added at the same moment
        raise RemoteRefused(
            f"A model named {name!r} is in the catalog already; pick another.", "name", 409
        ) from None
    sync_catalog(fresh=True)
    return entry


def server_for(entry: ModelEntry) -> RemoteServer:
    """The endpoint of a remote model, its URL checked against today's allow-list."""
    endpoint = RemoteEndpoint.objects.filter(entry=entry).first()
    if endpoint is None:
        raise RemoteRefused(f"{entry.name} has no remote server recorded.", status=410)
    try:
        url = check_base_url(endpoint.base_url, settings.REMOTE_MODEL_HOSTS)
    except RemoteError as exc:
        raise RemoteRefused(f"{entry.name} cannot be used now: {exc}", status=403) from None
    return RemoteServer(url, endpoint.remote_model, endpoint.api_key)
