"""Load models and tokenizers from the store onto the best device, with a bounded cache.

The cache keeps at most `max_models` loaded models and evicts the least recently used one; loading is
serialized per cache so two requests for the same model never load it twice.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmcore.encoding import EncodingError, Message, encode_chat
from llmcore.store import ModelStore, StoreError
from llmcore.tokenize import TokenizeError

# Tokens that end an assistant turn in common chat templates. Whichever of them a tokenizer has is added
# to the model's stop tokens, so generation ends at the end of the turn, not at the length limit.
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>")


class TokenizerUnreadable(StoreError, TokenizeError):
    """A model's tokenizer files do not parse; the message names the model and the reason, for the user.

    Both a StoreError (the model cannot be loaded) and a TokenizeError (the tokenizer lab cannot use it).
    """


@contextmanager
def reading_tokenizer(name: str) -> Iterator[None]:
    """Turn any failure while a model's tokenizer files are parsed into TokenizerUnreadable.

    transformers and tokenizers raise whatever the broken file makes them raise (JSONDecodeError, KeyError,
    TypeError, the Rust parser's bare Exception...): a damaged file is the file's fault, never a 500.
    """
    try:
        yield
    except TokenizerUnreadable:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        raise TokenizerUnreadable(
            f"The tokenizer of {name} cannot be read ({reason}). Its tokenizer files in the model store are "
            "damaged or in a format this version of transformers does not read; import the model again."
        ) from exc


def best_device(preference: str = "auto") -> torch.device:
    """cuda > mps > cpu, unless a device is asked for by name."""
    if preference and preference != "auto":
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise StoreError("MODEL_DEVICE asks for cuda, but no CUDA device is available.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise StoreError("MODEL_DEVICE asks for mps, but MPS is not available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the hardware runs it fast, float16 on Apple GPUs, float32 on CPUs."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


@dataclass
class LoadedModel:
    name: str
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any  # a transformers tokenizer
    device: torch.device
    dtype: torch.dtype
    stop_token_ids: list[int]
    is_causal: bool
    load_seconds: float
    loaded_at: float = field(default_factory=time.time)
    # A prompt-tuned model's learned virtual tokens, (n, hidden): the engine puts them before every
    # prompt (what peft does in training). None for every other model.
    soft_prompt: torch.Tensor | None = None

    @property
    def virtual_tokens(self) -> int:
        """How many soft-prompt positions come before every input (0 for all but prompt-tuned models)."""
        return 0 if self.soft_prompt is None else len(self.soft_prompt)

    @property
    def positions(self) -> int:
        """How many positions the model reads: its position table, else what the tokenizer says, else
        2048."""
        config = self.model.config
        text = getattr(config, "get_text_config", lambda: config)()
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(text, name, None)
            if isinstance(value, int) and value > 0:
                return value
        value = int(getattr(self.tokenizer, "model_max_length", 0) or 0)
        return value if 0 < value < 10**7 else 2048

    @property
    def context_length(self) -> int:
        """Tokens of text (prompt and answer) the model reads: its positions less a prompt-tuned model's
        virtual tokens, which take positions too. The one reading of it the engine and the tools use."""
        return self.positions - self.virtual_tokens

    def model_inputs(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model inputs for whole sequences (B, T): token ids, or embeddings with a prompt-tuned model's
        virtual tokens first (as peft puts them in training). Outputs then have `virtual_tokens` more
        positions at the start."""
        if self.soft_prompt is None:
            return {"input_ids": ids}
        embeds = self.model.get_input_embeddings()(ids)  # (B, T, H)
        soft = self.soft_prompt.to(embeds.dtype).unsqueeze(0).expand(len(ids), -1, -1)
        return {"inputs_embeds": torch.cat([soft, embeds], dim=1)}

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode_chat(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Token ids of a conversation as this model reads it: rendered through its chat template, only
        the template's markers special (user text never becomes control tokens). Every part that chats
        with a loaded model renders through here; llmcore.encoding does the work for any tokenizer.
        `tools`: function definitions, for a template that renders them (llmcore.tools)."""
        if not self.has_chat_template:
            raise EncodingError(f"{self.name} has no chat template.")
        return encode_chat(self.tokenizer, messages, add_generation_prompt=add_generation_prompt, tools=tools)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "load_seconds": round(self.load_seconds, 2),
        }


def stop_token_ids(tokenizer: Any, model: Any) -> list[int]:
    ids: list[int] = []
    eos = getattr(model.generation_config, "eos_token_id", None)
    for value in eos if isinstance(eos, list) else [eos, tokenizer.eos_token_id]:
        if value is not None and value not in ids:
            ids.append(int(value))
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        token_id = vocab.get(token)
        if token_id is not None and token_id not in ids:
            ids.append(int(token_id))
    return ids


def load_model(
    store: ModelStore,
    name: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Load one model from the store, safetensors only, never running code shipped with a model."""
    meta = store.meta(name)
    is_causal = not (meta.facts and meta.facts.is_encoder_only)
    return load_folder(store.path(name), name=name, device=device, dtype=dtype, is_causal=is_causal)


def quantized_dtype(path: Path) -> torch.dtype | None:
    """The dtype a torchao-quantized model was quantized in (its scales are in it), from config.json.

    Such a model is loaded in that dtype whatever the device's default, since torchao's tensors do not
    convert their scales on load.
    """
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if (config.get("quantization_config") or {}).get("quant_method") != "torchao":
        return None
    value = getattr(torch, str(config.get("dtype") or config.get("torch_dtype") or ""), None)
    return value if isinstance(value, torch.dtype) else None


def load_folder(
    path: Path,
    *,
    name: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    is_causal: bool = True,
) -> LoadedModel:
    """Load a model folder (a store folder, or a job's output before import) the way load_model does."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    target = device if isinstance(device, torch.device) else best_device(device or "auto")
    dtype = dtype or quantized_dtype(path) or default_dtype(target)
    started = time.perf_counter()
    auto = AutoModelForCausalLM if is_causal else AutoModel
    common = {"local_files_only": True, "trust_remote_code": False}
    with reading_tokenizer(name or path.name):
        tokenizer = AutoTokenizer.from_pretrained(path, **common)
    model = auto.from_pretrained(
        path, dtype=dtype, use_safetensors=True, local_files_only=True, trust_remote_code=False
    )
    model.to(target)  # type: ignore[arg-type]
    model.eval()
    stops = stop_token_ids(tokenizer, model) if is_causal else []
    if is_causal:
        model.generation_config.eos_token_id = stops
        if model.generation_config.pad_token_id is None and stops:
            model.generation_config.pad_token_id = stops[0]
    return LoadedModel(
        name=name or path.name,
        model=model,
        tokenizer=tokenizer,
        device=target,
        dtype=dtype,
        stop_token_ids=stops,
        is_causal=is_causal,
        load_seconds=time.perf_counter() - started,
        soft_prompt=read_soft_prompt(path, model) if is_causal else None,
    )


def read_soft_prompt(path: Path, model: Any) -> torch.Tensor | None:
    """The virtual-token embeddings of a prompt-tuning adapter in path/adapter (peft's safetensors file),
    or None when the folder has no such adapter. LoRA adapters are already merged into the weights."""
    config_file = path / "adapter" / "adapter_config.json"
    weights = path / "adapter" / "adapter_model.safetensors"
    if not config_file.is_file() or not weights.is_file():
        return None
    if json.loads(config_file.read_text()).get("peft_type") != "PROMPT_TUNING":
        return None
    from safetensors.torch import load_file

    embeddings = load_file(str(weights)).get("prompt_embeddings")
    hidden = model.get_input_embeddings().weight
    if embeddings is None or embeddings.ndim != 2 or embeddings.shape[1] != hidden.shape[1]:
        raise ValueError(f"{path.name}: the soft prompt in adapter/ does not fit the model.")
    return embeddings.to(device=hidden.device, dtype=hidden.dtype)


class ModelCache:
    """At most `max_models` loaded models, least recently used evicted first. Thread-safe."""

    def __init__(self, store: ModelStore, max_models: int = 2, device: str = "auto") -> None:
        if max_models < 1:
            raise ValueError("max_models must be at least 1")
        self.store = store
        self.max_models = max_models
        self.device = device
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, name: str) -> LoadedModel:
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            while len(self._models) >= self.max_models:
                self._evict_oldest()
            loaded = load_model(self.store, name, device=best_device(self.device))
            self._models[name] = loaded
            return loaded

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())

    def forget(self, name: str) -> None:
        """Unload a model (for example after it was removed from the store)."""
        with self._lock:
            if self._models.pop(name, None) is not None:
                _release_memory()

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            _release_memory()

    def _evict_oldest(self) -> None:
        self._models.popitem(last=False)
        _release_memory()


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
