"""The model store: one folder per model under a root folder (MODEL_DIR).

A model folder holds safetensors weights, tokenizer files, config.json and `meta.json` (name, source,
license, parent, how it was made, created time, sha256 of the weights, and the architecture facts people
compare). Models arrive by import: from a GGUF file (dequantized once and saved as safetensors) or from a
Hugging Face folder with safetensors. Pickle checkpoints and folders that need custom code are refused.

An import is written into a hidden temporary folder and renamed into place only when complete, so a
failed or interrupted import never leaves a half-written model behind. It copies real files only: a
symbolic link among the files it would read or copy is refused, because the store serves some of them for
download (the GGUF export, the adapter) and a link could pull any file of the machine into it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from llmcore.errors import UserError

META_FILE = "meta.json"
ADAPTER_DIR = "adapter"  # a fine-tune's peft adapter, kept beside the merged weights
# Bumped when read_facts learns new facts: a model whose meta.json has older facts gets them re-read once.
FACTS_VERSION = 2
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
# Files copied from an imported folder; anything else (README, images, pickles) stays behind.
TOKENIZER_FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
}
CONFIG_FILES = {"config.json", "generation_config.json"}
# A sentence-transformers encoder's pooling (mean, CLS...), which its embeddings need (llmcore.embeddings).
POOLING_FILE = Path("1_Pooling") / "config.json"

Progress = Callable[[str], None]


class StoreError(UserError):
    """A model cannot be imported, found or removed; the message says why, for the user."""


class ModelExists(StoreError):
    """The store already has a model of that name (perhaps one imported at the same moment)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"A model named {name!r} already exists; remove it first or pick another name.")
        self.name = name


@dataclass
class ModelFacts:
    """What people compare between models, read from config.json and the weights' headers."""

    family: str
    architecture: str
    parameters: int
    layers: int | None
    attention_heads: int | None
    kv_heads: int | None
    hidden_size: int | None
    vocab_size: int | None
    context_length: int | None
    dtype: str
    size_bytes: int
    is_encoder_only: bool = False
    # What sets otherwise similar models apart. Every field has a default so that meta.json files written
    # before a field existed still load; ModelStore.meta() re-reads the facts of such a model once.
    attention: str | None = None  # "causal": a token sees only earlier tokens; "bidirectional": all tokens
    sliding_window: int | None = None  # tokens a windowed layer looks back over; None when no layer is
    sliding_window_layers: int = 0  # how many layers use that window (the rest see the whole context)
    head_dim: int | None = None  # not always hidden_size / heads (Gemma 3 270M: 640 / 4 heads, but 256)
    intermediate_size: int | None = None  # the feed-forward (MLP) width
    activation: str | None = None
    tie_word_embeddings: bool | None = None  # None for an encoder without an output layer
    positional: str | None = None  # "RoPE", "learned absolute", "ALiBi"
    rope_theta: float | None = None  # RoPE base of the full-attention layers
    rope_theta_sliding: float | None = None  # RoPE base of the windowed layers, where it differs
    facts_version: int = 1  # files from before versions were recorded read as 1; see FACTS_VERSION


@dataclass
class ModelMeta:
    name: str
    source: str
    license: str = "unknown"
    parent: str | None = None
    method: str = "import"
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    sha256: str = ""
    facts: ModelFacts | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "facts"}
        return cls(**known, facts=facts_from_dict(data.get("facts")))


def facts_from_dict(data: dict[str, Any] | None) -> ModelFacts | None:
    """Facts from meta.json, tolerating files written before (or after) a field existed."""
    if not data:
        return None
    facts = ModelFacts(**{k: v for k, v in data.items() if k in ModelFacts.__dataclass_fields__})
    if facts.attention is None:
        facts.attention = "bidirectional" if facts.is_encoder_only else "causal"
    return facts


def validate_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise StoreError(
            f"Invalid model name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def name_from(text: str) -> str:
    """A valid model name derived from a file or folder name."""
    stem = re.sub(r"\.gguf$", "", text, flags=re.I)
    slug = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    return validate_name(slug[:64] or "model")


class ModelStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    # --- paths --------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """The folder of a model; the name is validated and the path can never leave the root."""
        path = (self.root / validate_name(name)).resolve()
        if path.parent != self.root:
            raise StoreError(f"Model name {name!r} escapes the model store.")
        return path

    def exists(self, name: str) -> bool:
        return (self.path(name) / META_FILE).is_file()

    # --- reading ------------------------------------------------------------------------------
    def meta(self, name: str) -> ModelMeta:
        meta_path = self.path(name) / META_FILE
        if not meta_path.is_file():
            raise StoreError(f"No model named {name!r} in the store.")
        meta = ModelMeta.from_dict(json.loads(meta_path.read_text()))
        if meta.facts is not None and meta.facts.facts_version < FACTS_VERSION:
            meta = _refresh_facts(meta_path.parent, meta)
        return meta

    def list(self) -> list[ModelMeta]:
        if not self.root.is_dir():
            return []
        metas = []
        for child in sorted(self.root.iterdir()):
            if child.name.startswith(".") or not (child / META_FILE).is_file():
                continue
            try:
                metas.append(self.meta(child.name))
            except (StoreError, ValueError, TypeError):
                continue  # a foreign or damaged folder is not a model; it is skipped, not fatal
        return metas

    # --- changing -----------------------------------------------------------------------------
    def update_extra(self, name: str, changes: dict[str, Any]) -> ModelMeta:
        """Merge `changes` into a model's extra metadata (who owns it, whether it is shared...) and
        rewrite its meta.json atomically; the weights and facts stay as they are."""
        meta = self.meta(name)
        meta.extra = {**meta.extra, **changes}
        try:
            _replace_meta(self.path(name), meta)
        except OSError as exc:
            raise StoreError(f"Could not update {name}'s metadata: {exc.strerror or exc}.") from None
        return meta

    # --- removing -----------------------------------------------------------------------------
    def remove(self, name: str) -> None:
        path = self.path(name)
        if not (path / META_FILE).is_file():
            raise StoreError(f"No model named {name!r} in the store.")
        trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        path.rename(trash)  # atomic: the model disappears at once, then the files go
        shutil.rmtree(trash, ignore_errors=True)

    # --- importing ----------------------------------------------------------------------------
    def import_folder(
        self,
        source: Path | str,
        name: str | None = None,
        *,
        license: str | None = None,
        source_label: str | None = None,
        parent: str | None = None,
        method: str = "import",
        extra: dict[str, Any] | None = None,
    ) -> ModelMeta:
        """Import a Hugging Face model folder with safetensors weights (copied, never moved)."""
        src = Path(source).resolve()
        if not src.is_dir():
            raise StoreError(f"{src} is not a folder.")
        check_importable(src)
        name = validate_name(name) if name else name_from(src.name)

        def write(tmp: Path) -> None:
            for item in sorted(src.iterdir()):
                if is_model_file(item.name) and item.is_file():
                    copy_file(src, item, tmp / item.name)
            copy_adapter(src / ADAPTER_DIR, tmp / ADAPTER_DIR)
            copy_pooling(src, tmp)

        return self._write_model(
            name,
            write,
            ModelMeta(
                name=name,
                source=source_label or str(src),
                license=license or read_license(src),
                parent=parent,
                method=method,
                extra=extra or {},
            ),
        )

    def import_gguf(
        self,
        gguf_path: Path | str,
        name: str | None = None,
        *,
        license: str = "unknown",
        source_label: str | None = None,
        progress: Progress | None = None,
        extra: dict[str, Any] | None = None,
        chat_template: str | None = None,
    ) -> ModelMeta:
        """Dequantize a GGUF file once with transformers + gguf and store it as safetensors.

        `chat_template` is used when the GGUF carries none (some conversions drop it), so that chat
        prompts are built in the model's own turn format rather than not at all.
        """
        path = Path(gguf_path).resolve()
        if not path.is_file() or path.suffix.lower() != ".gguf":
            raise StoreError(f"{path} is not a .gguf file.")
        name = validate_name(name) if name else name_from(path.name)

        def write(tmp: Path) -> None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if progress:
                progress(f"Reading the tokenizer from {path.name}")
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            if chat_template and not getattr(tokenizer, "chat_template", None):
                tokenizer.chat_template = chat_template
            if progress:
                progress(f"Dequantizing the weights of {path.name} (once; later loads read safetensors)")
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
            # The weights are plain tensors now: drop the GGUF marker so they save as ordinary safetensors.
            model.hf_quantizer = None  # type: ignore[assignment]
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)

        return self._write_model(
            name,
            write,
            ModelMeta(
                name=name,
                source=source_label or str(path),
                license=license,
                method="import-gguf",
                extra={"gguf_file": path.name, "gguf_sha256": sha256_file(path), **(extra or {})},
            ),
        )

    def import_copy(self, other: ModelStore, name: str) -> ModelMeta:
        """Copy a model, metadata included, from another store (a seed store baked into an image)."""
        src = other.path(name)
        check_no_links(src, [p for p in src.iterdir() if p.name != ADAPTER_DIR])
        meta = other.meta(name)

        def write(tmp: Path) -> None:
            for item in src.iterdir():
                if item.is_file() and item.name != META_FILE:
                    copy_file(src, item, tmp / item.name)
            copy_adapter(src / ADAPTER_DIR, tmp / ADAPTER_DIR)

        return self._write_model(name, write, meta)

    def _write_model(self, name: str, write: Callable[[Path], None], meta: ModelMeta) -> ModelMeta:
        final = self.path(name)
        if final.exists():
            raise ModelExists(name)
        if meta.parent is not None and not self.exists(meta.parent):
            raise StoreError(f"Parent model {meta.parent!r} is not in the store.")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".importing-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            write(tmp)
            weights = weight_files(tmp)
            if not weights:
                raise StoreError("The import produced no safetensors weights.")
            # An adapter's weights are part of what the model computes (a soft prompt over unchanged base
            # weights, say), so they count in its hash too.
            meta.sha256 = sha256_files(weights + sorted((tmp / ADAPTER_DIR).glob("*.safetensors")))
            meta.facts = read_facts(tmp)
            (tmp / META_FILE).write_text(meta.to_json())
            try:
                tmp.rename(final)
            except OSError:
                if final.exists():  # another import of the same name finished first (two pulls at once)
                    raise ModelExists(name) from None
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return meta


def _refresh_facts(folder: Path, meta: ModelMeta) -> ModelMeta:
    """Re-read the facts of a model imported before some of them were recorded, and keep them.

    Best effort: a store on a read-only volume (a seed store baked into an image) or a folder whose
    config no longer loads keeps its older facts rather than failing the page that lists it.
    """
    try:
        meta.facts = read_facts(folder)
    except Exception:
        return meta
    with contextlib.suppress(OSError):
        _replace_meta(folder, meta)
    return meta


def _replace_meta(folder: Path, meta: ModelMeta) -> None:
    """Rewrite a model's meta.json atomically: a concurrent reader sees the old file or the new one,
    never half of one. OSError (a read-only store, a full disk) is the caller's to handle."""
    tmp = folder / f".{META_FILE}.{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(meta.to_json())
        tmp.replace(folder / META_FILE)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


# --- checks and facts ----------------------------------------------------------------------------
def check_importable(src: Path) -> None:
    """Everything import_folder checks before it copies a byte: no links, then check_importable_folder."""
    # Before anything is read: check_importable_folder reads config.json, read_license the README.
    check_no_links(src, [*(p for p in src.iterdir() if is_model_file(p.name)), src / "README.md"])
    check_importable_folder(src)


def check_file_names(names: Iterable[str], where: str) -> None:
    """Refuse a model folder by its files' names alone (so an upload is refused before it is written):
    pickle checkpoints with no safetensors beside them, no safetensors at all, code shipped with the
    model, or no config.json."""
    names = [Path(name).name for name in names]
    has_safetensors = any(name.endswith(".safetensors") for name in names)
    pickles = sorted(name for name in names if Path(name).suffix.lower() in PICKLE_SUFFIXES)
    if pickles and not has_safetensors:
        raise StoreError(
            f"Refused: {', '.join(pickles)} {'is a' if len(pickles) == 1 else 'are'} pickle checkpoint"
            f"{'' if len(pickles) == 1 else 's'}, which can run arbitrary code when loaded. "
            "Only safetensors weights are accepted; convert the checkpoint to safetensors first."
        )
    if not has_safetensors:
        raise StoreError(f"Refused: {where} holds no .safetensors weights.")
    code_files = sorted(name for name in names if name.endswith(".py"))
    if code_files:
        raise_custom_code(f"({', '.join(code_files)})")
    if "config.json" not in names:
        raise StoreError(f"Refused: {where} has no config.json.")


def raise_custom_code(what: str) -> NoReturn:
    raise StoreError(
        f"Refused: this model needs custom code {what}. The playground never runs code shipped with a "
        "model (trust_remote_code stays off)."
    )


def check_importable_folder(src: Path) -> None:
    check_file_names([p.name for p in src.iterdir() if p.is_file()], str(src))
    try:
        config = json.loads((src / "config.json").read_text())
    except ValueError as exc:
        raise StoreError(f"Refused: config.json is not valid JSON ({exc}).") from None
    if not isinstance(config, dict):
        raise StoreError("Refused: config.json does not hold a JSON object.")
    if config.get("auto_map"):
        raise_custom_code("(auto_map in config.json)")
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise StoreError(f"Refused: model type {model_type!r} is not one that transformers knows.")


def copy_adapter(src: Path, dst: Path) -> None:
    """A fine-tune's peft adapter (LoRA weights or a soft prompt) travels with its model: safetensors and
    JSON only, nothing that could hold code. Its weights are not the model's, so they stay in their folder."""
    folder = src.parent
    check_no_links(folder, [src])
    if not src.is_dir():
        return
    wanted = [
        p for p in sorted(src.iterdir()) if p.suffix in (".safetensors", ".json") or p.name in TOKENIZER_FILES
    ]
    check_no_links(folder, wanted)
    dst.mkdir()
    for item in wanted:
        if item.is_file():
            copy_file(folder, item, dst / item.name)


def copy_pooling(src: Path, dst: Path) -> None:
    """A sentence-transformers pooling config (JSON, nothing that runs) travels with its encoder."""
    pooling = src / POOLING_FILE
    check_no_links(src, [pooling.parent, pooling])
    if pooling.is_file():
        (dst / POOLING_FILE).parent.mkdir()
        copy_file(src, pooling, dst / POOLING_FILE)


def is_model_file(name: str) -> bool:
    """A file a folder import copies: weights, tokenizer and config; anything else (README, images,
    pickles) stays behind."""
    return (
        name.endswith((".safetensors", ".gguf", ".safetensors.index.json"))  # a GGUF export: for download
        or name in TOKENIZER_FILES
        or name in CONFIG_FILES
    )


def check_no_links(folder: Path, paths: Iterable[Path]) -> None:
    """Refuse a symbolic link among `paths` (or a path that resolves outside `folder`), naming it."""
    root = folder.resolve()
    for path in paths:
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            shown = path.relative_to(folder) if path.is_relative_to(folder) else path
            raise StoreError(
                f"Refused: {shown} is a symbolic link. An import copies real files only, so that nothing "
                f"from outside {folder.name}/ can end up in the store (and in its downloads). Replace the "
                "link with the file itself (`cp -rL` copies a folder with its links followed)."
            )


def copy_file(folder: Path, src: Path, dst: Path) -> None:
    """Copy one regular file, never through a link: opened with O_NOFOLLOW, so a file swapped for a link
    after check_no_links is refused too."""
    try:
        fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        check_no_links(folder, [src])  # a link: refused with the message that names it
        raise
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"Refused: {src.name} is not a regular file.")
        with dst.open("xb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))  # as copy2 did: a copy keeps its file's time


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def sha256_file(path: Path) -> str:
    return sha256_files([path])


def sha256_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def read_license(src: Path) -> str:
    """The license named in a model card's front matter, if there is one."""
    readme = src / "README.md"
    if readme.is_file():
        match = re.search(r"^license:\s*(\S+)", readme.read_text(errors="replace")[:4000], re.M)
        if match:
            return match.group(1)
    return "unknown"


def read_facts(folder: Path) -> ModelFacts:
    """Architecture facts from config.json, parameter count and dtype from the safetensors headers.

    Reading headers only (no tensors) keeps this instant even for large models.
    """
    from safetensors import safe_open
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    text = getattr(config, "get_text_config", lambda: config)()
    parameters = 0
    dtypes: dict[str, int] = {}
    # A learned table of positions shows in the weights (BERT: position_embeddings, GPT-2: wpe), where
    # configs do not always say it (transformers 5 dropped BERT's position_embedding_type).
    learned_positions = False
    for path in weight_files(folder):
        with safe_open(path, framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                learned_positions |= key.endswith(("position_embeddings.weight", "wpe.weight"))
                shape = fh.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                parameters += count
                dtype = str(fh.get_slice(key).get_dtype()).lower()
                dtypes[dtype] = dtypes.get(dtype, 0) + count
    heads = getattr(text, "num_attention_heads", None)
    hidden = getattr(text, "hidden_size", None)
    layers = getattr(text, "num_hidden_layers", None)
    architectures = getattr(config, "architectures", None) or [type(config).__name__]
    encoder_only = not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    window, windowed = _sliding_window(text, layers)
    positional, theta, theta_sliding = _positions(text, learned_positions)
    return ModelFacts(
        family=config.model_type,
        architecture=architectures[0],
        parameters=parameters,
        layers=layers,
        attention_heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        hidden_size=hidden,
        vocab_size=getattr(text, "vocab_size", None),
        context_length=getattr(text, "max_position_embeddings", None),
        dtype=_dtype_name(max(dtypes, key=lambda d: dtypes[d])) if dtypes else "unknown",
        size_bytes=sum(
            p.stat().st_size
            for p in folder.iterdir()
            if p.is_file() and p.name != META_FILE and not p.name.startswith(".")
        ),
        is_encoder_only=encoder_only,
        attention=(
            "bidirectional"
            if encoder_only or getattr(text, "use_bidirectional_attention", False)
            else "causal"
        ),
        sliding_window=window,
        sliding_window_layers=windowed,
        head_dim=getattr(text, "head_dim", None) or (hidden // heads if hidden and heads else None),
        intermediate_size=getattr(text, "intermediate_size", None),
        activation=getattr(text, "hidden_activation", None) or getattr(text, "hidden_act", None),
        # An encoder loaded without a language-model head has no output layer to tie.
        tie_word_embeddings=None if encoder_only else bool(getattr(config, "tie_word_embeddings", False)),
        positional=positional,
        rope_theta=theta,
        rope_theta_sliding=theta_sliding,
        facts_version=FACTS_VERSION,
    )


def _sliding_window(text: Any, layers: int | None) -> tuple[int | None, int]:
    """The window size and how many layers use it.

    Newer configs list each layer's kind in `layer_types` (Gemma 3: five windowed layers, then one full);
    older ones (Mistral) have only `sliding_window`, which then applies to every layer.
    """
    window = getattr(text, "sliding_window", None)
    if not window or getattr(text, "use_sliding_window", True) is False:
        return None, 0
    layer_types = getattr(text, "layer_types", None) or ["sliding_attention"] * (layers or 0)
    windowed = sum(1 for kind in layer_types if kind == "sliding_attention")
    return (int(window), windowed) if windowed else (None, 0)


def _positions(text: Any, learned: bool) -> tuple[str | None, float | None, float | None]:
    """How positions reach the model, and RoPE's base for full and for windowed layers.

    transformers 5 keeps RoPE settings in `rope_parameters`, either one dict or one per layer kind
    (Gemma 3 rotates windowed layers with base 10,000 and full layers with 1,000,000); transformers 4
    had `rope_theta` (and Gemma 3's `rope_local_base_freq`).
    """
    params = getattr(text, "rope_parameters", None)
    theta: Any = None
    sliding: Any = None
    if isinstance(params, dict):
        full, local = params.get("full_attention"), params.get("sliding_attention")
        if isinstance(full, dict) or isinstance(local, dict):
            theta = (full or {}).get("rope_theta")
            sliding = (local or {}).get("rope_theta")
        else:
            theta = params.get("rope_theta")
    theta = theta or getattr(text, "rope_theta", None)
    sliding = sliding or getattr(text, "rope_local_base_freq", None)
    if theta or sliding:
        theta = float(theta) if theta else None
        sliding = float(sliding) if sliding and float(sliding) != theta else None
        return "RoPE", theta, sliding
    if getattr(text, "alibi", False) or getattr(text, "model_type", "") in {"bloom", "mpt"}:
        return "ALiBi", None, None
    kind = getattr(text, "position_embedding_type", None)
    if kind in {"relative_key", "relative_key_query"}:
        return "learned relative", None, None
    if learned or kind == "absolute":
        return "learned absolute", None, None
    return None, None, None


def _dtype_name(safetensors_dtype: str) -> str:
    names = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "i8": "int8", "u8": "uint8"}
    return names.get(safetensors_dtype, safetensors_dtype)
