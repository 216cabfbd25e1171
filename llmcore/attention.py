"""Attention maps: every layer's attention weights from one eager forward pass, kept compactly, cut into
the pieces a page draws.

- Capture: transformers computes attention weights only in its eager attention (sdpa and flash kernels never
  materialise them). The loaded model is shared by every request in the process and may be running sdpa in
  another thread right now, so it is never switched. The capture runs an *eager twin* instead: a copy of the
  module tree whose parameters and buffers are the very same tensors (no extra weight memory) and whose own
  config says "eager". One capture runs at a time (a lock), which also bounds the memory captures take.
- Each layer's weights come from the module that the model itself declares as its attention recorder
  (`_can_record_outputs["attentions"]`), through a forward hook that converts them to float16 on the CPU as
  soon as the layer is done and drops the float32 original, so a 1024-token capture of a 30-layer model never
  holds more than one layer in float32.
- Pieces: a uint8 overview (every head max-pooled to at most 64x64 bins) for the model view, and float16
  bytes of one head or of a layer's mean over heads, on demand. Never JSON arrays of numbers.

Shapes: L layers, H query heads, KV key/value heads, T tokens; a layer is (H, T, T), rows are queries (the
token that looks), columns are keys (the token looked at), and every row sums to 1.
"""

from __future__ import annotations

import copy
import math
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from llmcore.encoding import encode_chat, encode_text
from llmcore.tokenize import token_display

OVERVIEW_SIZE = 64  # the model view draws each head from at most 64x64 pooled cells
_CAPTURE_LOCK = threading.Lock()
_TWINS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class AttentionInputError(ValueError):
    """The input cannot be captured (too long, empty...); the message says why, for the user."""


class AttentionUnsupported(RuntimeError):
    """The model does not expose its attention weights in a way this module can capture."""


@dataclass
class AttentionInput:
    token_ids: list[int]
    tokens: list[str]  # readable labels, one per token
    as_chat: bool
    notes: list[str] = field(default_factory=list)


def kv_head_of(num_heads: int, num_kv_heads: int) -> list[int]:
    """The key/value head each query head reads: with grouped-query attention, head h uses h // (H / KV)."""
    if num_kv_heads < 1 or num_heads % num_kv_heads:
        raise ValueError(f"{num_heads} query heads cannot share {num_kv_heads} key/value heads evenly")
    group = num_heads // num_kv_heads
    return [h // group for h in range(num_heads)]


def token_labels(tokenizer: Any, ids: list[int]) -> list[str]:
    """One readable label per token, in the tokenizer lab's notation (· for a space, <0xE2> for part of a
    character, WordPiece's ## kept, special tokens as written)."""
    return [token_display(tokenizer, i) for i in ids]


def prepare_input(
    tokenizer: Any,
    text: str,
    *,
    as_chat: bool,
    max_tokens: int,
    context_length: int | None = None,
    model_name: str = "this model",
) -> AttentionInput:
    """Token ids as the model will see them (chat template applied when asked), within the limits."""
    notes: list[str] = []
    if not text.strip():
        raise AttentionInputError("Type some text to look at.")
    if as_chat and not getattr(tokenizer, "chat_template", None):
        notes.append(f"{model_name} has no chat template, so it read the text as is.")
        as_chat = False
    if as_chat:
        ids = encode_chat(tokenizer, [{"role": "user", "content": text}])
    else:
        ids = encode_text(tokenizer, text)
    if not ids:
        raise AttentionInputError("The text gives no tokens.")
    limit, why = max_tokens, f"the limit is {max_tokens:,} tokens"
    if context_length and context_length < limit:
        limit, why = context_length, f"{model_name} reads at most {context_length:,} tokens"
    if len(ids) > limit:
        raise AttentionInputError(
            f"The text is {len(ids):,} tokens for {model_name}; {why}. Shorten it and run again."
        )
    return AttentionInput(token_ids=ids, tokens=token_labels(tokenizer, ids), as_chat=as_chat, notes=notes)


@dataclass
class AttentionCapture:
    """Every layer's attention for one input, float16 on the CPU, with the overview already pooled."""

    model_name: str
    token_ids: list[int]
    tokens: list[str]
    layers: list[torch.Tensor]  # L tensors, each (H, T, T) float16
    num_kv_heads: int
    is_causal: bool
    as_chat: bool
    forward_seconds: float
    overview: torch.Tensor  # (L, H, S, S) uint8, round(255 * sqrt(the largest weight of each bin))
    overview_bin: int  # tokens per overview bin along each axis
    notes: list[str] = field(default_factory=list)
    capture_id: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_heads(self) -> int:
        return int(self.layers[0].shape[0])

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def kv_head_of(self) -> list[int]:
        return kv_head_of(self.num_heads, self.num_kv_heads)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.layers) + self.overview.numel()

    def head(self, layer: int, head: int) -> torch.Tensor:
        self._check(layer, head)
        return self.layers[layer][head]  # (T, T)

    def layer_mean(self, layer: int) -> torch.Tensor:
        self._check(layer, 0)
        return self.layers[layer].float().mean(dim=0).to(torch.float16)  # (T, T); rows still sum to 1

    def head_bytes(self, layer: int, head: int) -> bytes:
        return _float16_bytes(self.head(layer, head))

    def mean_bytes(self, layer: int) -> bytes:
        return _float16_bytes(self.layer_mean(layer))

    def overview_bytes(self) -> bytes:
        return self.overview.contiguous().numpy().tobytes()

    def _check(self, layer: int, head: int) -> None:
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"Layer {layer} does not exist: this model has layers 0-{self.num_layers - 1}.")
        if not 0 <= head < self.num_heads:
            raise IndexError(f"Head {head} does not exist: this model has heads 0-{self.num_heads - 1}.")


def _float16_bytes(tensor: torch.Tensor) -> bytes:
    # Little-endian, as every browser's typed arrays on common hardware read it.
    return tensor.contiguous().numpy().astype("<f2", copy=False).tobytes()


def overview_bin(num_tokens: int, size: int = OVERVIEW_SIZE) -> int:
    """Tokens per overview bin: bin a covers tokens [a * bin, min((a + 1) * bin, T)), so S = ceil(T / bin)."""
    return max(1, math.ceil(num_tokens / size))


def pool_layer(weights: torch.Tensor, bin_size: int) -> torch.Tensor:
    """(H, T, T) -> (H, S, S) uint8: the largest weight of each bin, on a square-root scale.

    Max-pooling keeps thin patterns (a diagonal, one attended token) visible after shrinking, where a mean
    would fade them; the square root spreads the small weights of long inputs over more of the 256 levels.
    """
    pooled = F.max_pool2d(weights, bin_size, ceil_mode=True) if bin_size > 1 else weights
    return pooled.float().clamp_(0, 1).sqrt_().mul_(255).round_().to(torch.uint8).cpu()


def pool_overview(layers: list[torch.Tensor], size: int = OVERVIEW_SIZE) -> torch.Tensor:
    """(L, H, S, S) uint8 overview of every layer (see pool_layer)."""
    bin_size = overview_bin(int(layers[0].shape[-1]), size)
    return torch.stack([pool_layer(layer, bin_size) for layer in layers])


# --- capture ------------------------------------------------------------------------------------------
def _attention_recorder(model: Any) -> tuple[type | None, str | None, int]:
    """(class, class-name suffix, output index) of the modules that return attention weights."""
    specs = (getattr(model, "_can_record_outputs", None) or {}).get("attentions")
    if isinstance(specs, list):
        specs = specs[0] if specs else None
    if specs is None:
        raise AttentionUnsupported(f"{type(model).__name__} does not say which modules compute attention.")
    if isinstance(specs, type):
        return specs, None, 1
    if isinstance(specs, str):
        return None, specs, 1
    return getattr(specs, "target_class", None), getattr(specs, "class_name", None), int(specs.index)


def eager_twin(model: Any) -> Any:
    """A copy of `model` that shares every parameter and buffer but runs eager attention (made once)."""
    twin = _TWINS.get(model)
    if twin is None:
        shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
        twin = copy.deepcopy(model, memo=shared)
        twin.set_attn_implementation("eager")
        twin.eval()
        _TWINS[model] = twin
    return twin


def _kv_heads(config: Any) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(getattr(text, "num_key_value_heads", None) or text.num_attention_heads)


def forward_with_attention(
    model: Any, token_ids: Sequence[int], keep: Callable[[torch.Tensor], None]
) -> tuple[Any, float]:
    """One forward pass of the model's eager twin over `token_ids` (one sequence, never padded), calling
    `keep(weights)` with each attention layer's weights (H, T, T), in layer order. Returns the twin's config
    and the forward's seconds. The weights are handed back to the model as None, so nothing downstream
    keeps the float32 copy alive; whatever `keep` needs it must copy."""
    with _CAPTURE_LOCK:
        twin = eager_twin(model)
        target, suffix, index = _attention_recorder(twin)
        captured = 0

        def hook(module: Any, args: Any, output: Any) -> Any:
            nonlocal captured
            weights = output[index]
            if weights is None:
                raise AttentionUnsupported(f"{type(module).__name__} returned no attention weights.")
            keep(weights[0])
            captured += 1
            return (*output[:index], None, *output[index + 1 :])

        hooks = [
            module.register_forward_hook(hook)
            for name, module in twin.named_modules()
            if (target is not None and isinstance(module, target)) or (suffix and name.endswith(suffix))
        ]
        if not hooks:
            raise AttentionUnsupported(f"No attention modules found in {type(model).__name__}.")
        device = next(twin.parameters()).device
        ids = torch.tensor([list(token_ids)], device=device)  # (1, T)
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                # The base model skips the LM head: a (T, vocab) logits tensor the capture never needs.
                twin.base_model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        finally:
            for hook_handle in hooks:
                hook_handle.remove()
        seconds = time.perf_counter() - started
    expected = getattr(twin.config.get_text_config(), "num_hidden_layers", captured)
    if captured != expected:
        raise AttentionUnsupported(f"Captured {captured} attention layers, expected {expected}.")
    return twin.config, seconds


def capture_attention(
    model: Any,
    inp: AttentionInput,
    *,
    model_name: str,
    is_causal: bool,
    overview_size: int = OVERVIEW_SIZE,
) -> AttentionCapture:
    """Run the model once over the input and keep every layer's attention weights as float16."""
    layers: list[torch.Tensor] = []
    pooled: list[torch.Tensor] = []
    bin_size = overview_bin(len(inp.token_ids), overview_size)

    def keep(weights: torch.Tensor) -> None:  # (H, T, T)
        layers.append(weights.to(torch.float16).cpu())
        # Pooled here, on the device and in the model's dtype: cheaper than from the float16 copy later.
        pooled.append(pool_layer(weights, bin_size))  # (H, S, S)

    config, seconds = forward_with_attention(model, inp.token_ids, keep)
    return AttentionCapture(
        model_name=model_name,
        token_ids=list(inp.token_ids),
        tokens=list(inp.tokens),
        layers=layers,
        num_kv_heads=_kv_heads(config),
        is_causal=is_causal,
        as_chat=inp.as_chat,
        forward_seconds=seconds,
        overview=torch.stack(pooled),
        overview_bin=bin_size,
        notes=list(inp.notes),
    )


# --- keeping captures -----------------------------------------------------------------------------------
class CaptureCache:
    """The few most recent captures, least recently used evicted first, bounded by count and by bytes.

    The newest capture is always kept, even alone over the byte budget, so a run can always be looked at.
    Each capture belongs to an owner (a user id); another owner asking for it is told it does not exist.
    """

    def __init__(self, max_captures: int = 6, max_bytes: int = 2 << 30) -> None:
        self.max_captures, self.max_bytes = max_captures, max_bytes
        self._items: OrderedDict[str, tuple[Any, AttentionCapture]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, capture: AttentionCapture, owner: Any = None) -> str:
        with self._lock:
            self._items[capture.capture_id] = (owner, capture)
            while len(self._items) > 1 and (
                len(self._items) > self.max_captures or self.total_bytes() > self.max_bytes
            ):
                self._items.popitem(last=False)
        return capture.capture_id

    def get(self, capture_id: str, owner: Any = None) -> AttentionCapture | None:
        with self._lock:
            item = self._items.get(capture_id)
            if item is None or item[0] != owner:
                return None
            self._items.move_to_end(capture_id)
            return item[1]

    def total_bytes(self) -> int:
        return sum(capture.nbytes for _, capture in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def rows_sum_error(capture: AttentionCapture) -> float:
    """The largest distance of any row's sum from 1 (a self-check: softmax rows sum to 1)."""
    worst = 0.0
    for layer in capture.layers:
        worst = max(worst, float((layer.float().sum(dim=-1) - 1).abs().max()))
    return worst if math.isfinite(worst) else math.inf
