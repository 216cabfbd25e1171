"""The catalog: the model store on disk, mirrored into ModelEntry rows with lineage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction

from llmcore import pulls
from llmcore.store import ModelMeta, ModelStore, StoreError
from playground.catalog.models import ModelEntry
from playground.core.services import model_cache, model_store

__all__ = ["StoreError", "import_model", "list_models", "pull_model", "remove_model", "sync_catalog"]


def sync_catalog() -> list[ModelEntry]:
    """Make the catalog rows match the store: add, update and drop rows; link parents.

    Called on every catalog page view, so it writes only when the store has changed.
    """
    metas = {meta.name: meta for meta in model_store().list()}
    entries = {e.name: e for e in ModelEntry.objects.select_related("parent")}
    stale = [name for name in entries if name not in metas]
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
    return sorted((entries[name] for name in metas), key=lambda e: e.name)


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
    return {"extra": meta.extra, "facts": asdict(meta.facts) if meta.facts else None}


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
    }


def list_models() -> list[ModelEntry]:
    return sync_catalog()


def import_model(
    path: Path | str, name: str | None = None, progress: Callable[[str], None] | None = None
) -> ModelMeta:
    """Import a GGUF file or a Hugging Face folder with safetensors into the store and the catalog."""
    source = Path(path).expanduser()
    if source.is_file() and source.suffix.lower() == ".gguf":
        meta = model_store().import_gguf(source, name, progress=progress)
    elif source.is_dir():
        meta = model_store().import_folder(source, name)
    elif source.is_file() and source.suffix.lower() in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}:
        raise StoreError(
            f"Refused: {source.name} is a pickle checkpoint, which can run arbitrary code when loaded. "
            "Only safetensors weights (or GGUF files) are accepted."
        )
    else:
        raise StoreError(f"{source} is neither a .gguf file nor a model folder.")
    sync_catalog()
    return meta


def pull_model(name: str, progress: Callable[[str], None] | None = None) -> tuple[ModelMeta, bool]:
    seed_dir = getattr(settings, "MODEL_SEED_DIR", None)
    seed = ModelStore(seed_dir) if seed_dir else None
    result = pulls.pull(name, model_store(), settings.DOWNLOAD_CACHE_DIR, seed_store=seed, progress=progress)
    sync_catalog()
    return result


def remove_model(name: str) -> None:
    store = model_store()
    children = [m.name for m in store.list() if m.parent == name]
    if children:
        raise StoreError(f"{name!r} is the parent of {', '.join(children)}; remove those first.")
    store.remove(name)
    model_cache().forget(name)
    sync_catalog()


def pullable_models() -> list[pulls.PullSpec]:
    return list(pulls.PULLABLE.values())
