"""The model store: one folder per model under a root folder (MODEL_DIR).

A model folder holds safetensors weights, tokenizer files, config.json and `meta.json` (name, source,
license, parent, how it was made, created time, sha256 of the weights, and the architecture facts people
compare). Models arrive by import: from a GGUF file (dequantized once and saved as safetensors) or from a
Hugging Face folder with safetensors. Pickle checkpoints and folders that need custom code are refused.

An import is written into a hidden temporary folder and renamed into place only when complete, so a
failed or interrupted import never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

META_FILE = "meta.json"
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

Progress = Callable[[str], None]


class StoreError(Exception):
    """A model cannot be imported, found or removed; the message says why, for the user."""


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
        facts = data.get("facts")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "facts"}
        return cls(**known, facts=ModelFacts(**facts) if facts else None)


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
        return ModelMeta.from_dict(json.loads(meta_path.read_text()))

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
        check_importable_folder(src)
        name = validate_name(name) if name else name_from(src.name)

        def write(tmp: Path) -> None:
            for item in sorted(src.iterdir()):
                if item.is_file() and (
                    item.suffix == ".safetensors"
                    or item.name.endswith(".safetensors.index.json")
                    or item.name in TOKENIZER_FILES
                    or item.name in CONFIG_FILES
                ):
                    shutil.copy2(item, tmp / item.name)

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
    ) -> ModelMeta:
        """Dequantize a GGUF file once with transformers + gguf and store it as safetensors."""
        path = Path(gguf_path).resolve()
        if not path.is_file() or path.suffix.lower() != ".gguf":
            raise StoreError(f"{path} is not a .gguf file.")
        name = validate_name(name) if name else name_from(path.name)

        def write(tmp: Path) -> None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if progress:
                progress(f"Reading the tokenizer from {path.name}")
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
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
        meta = other.meta(name)

        def write(tmp: Path) -> None:
            for item in src.iterdir():
                if item.is_file() and item.name != META_FILE:
                    shutil.copy2(item, tmp / item.name)

        return self._write_model(name, write, meta)

    def _write_model(self, name: str, write: Callable[[Path], None], meta: ModelMeta) -> ModelMeta:
        final = self.path(name)
        if final.exists():
            raise StoreError(f"A model named {name!r} already exists; remove it first or pick another name.")
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
            meta.sha256 = sha256_files(weights)
            meta.facts = read_facts(tmp)
            (tmp / META_FILE).write_text(meta.to_json())
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return meta


# --- checks and facts ----------------------------------------------------------------------------
def check_importable_folder(src: Path) -> None:
    files = [p for p in src.iterdir() if p.is_file()]
    has_safetensors = any(p.suffix == ".safetensors" for p in files)
    pickles = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if pickles and not has_safetensors:
        raise StoreError(
            f"Refused: {', '.join(pickles)} {'is a' if len(pickles) == 1 else 'are'} pickle checkpoint"
            f"{'' if len(pickles) == 1 else 's'}, which can run arbitrary code when loaded. "
            "Only safetensors weights are accepted; convert the checkpoint to safetensors first."
        )
    if not has_safetensors:
        raise StoreError(f"Refused: {src} holds no .safetensors weights.")
    config_path = src / "config.json"
    if not config_path.is_file():
        raise StoreError(f"Refused: {src} has no config.json.")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as exc:
        raise StoreError(f"Refused: config.json is not valid JSON ({exc}).") from None
    code_files = sorted(p.name for p in files if p.suffix == ".py")
    if config.get("auto_map") or code_files:
        raise StoreError(
            "Refused: this model needs custom code"
            + (f" ({', '.join(code_files)})" if code_files else " (auto_map in config.json)")
            + ". The playground never runs code shipped with a model (trust_remote_code stays off)."
        )
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise StoreError(f"Refused: model type {model_type!r} is not one that transformers knows.")


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
    for path in weight_files(folder):
        with safe_open(path, framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                shape = fh.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                parameters += count
                dtype = str(fh.get_slice(key).get_dtype()).lower()
                dtypes[dtype] = dtypes.get(dtype, 0) + count
    heads = getattr(text, "num_attention_heads", None)
    architectures = getattr(config, "architectures", None) or [type(config).__name__]
    return ModelFacts(
        family=config.model_type,
        architecture=architectures[0],
        parameters=parameters,
        layers=getattr(text, "num_hidden_layers", None),
        attention_heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        hidden_size=getattr(text, "hidden_size", None),
        vocab_size=getattr(text, "vocab_size", None),
        context_length=getattr(text, "max_position_embeddings", None),
        dtype=_dtype_name(max(dtypes, key=lambda d: dtypes[d])) if dtypes else "unknown",
        size_bytes=sum(p.stat().st_size for p in folder.iterdir() if p.is_file()),
        is_encoder_only=not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures),
    )


def _dtype_name(safetensors_dtype: str) -> str:
    names = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "i8": "int8", "u8": "uint8"}
    return names.get(safetensors_dtype, safetensors_dtype)
