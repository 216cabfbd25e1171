"""Attention maps: every layer's attention weights from one eager forward pass, kept compactly, cut into
the pieces a page draws.

- Capture: transformers computes attention weights only in its eager attention (sdpa and flash kernels never
  materialise them). The loaded model is shared by every request in the process and may be running sdpa in
  another thread right now, so it is never switched. The capture runs an *eager twin* instead: a copy of the
  module tree whose parameters and buffers are the very same tensors (no extra weight memory) and whose own
  config says "eager". One forward runs at a time (a lock); CaptureCache bounds how many captures wait
  for it and how many bytes they may keep.
- Each layer's weights come from the module that the model itself declares as its attention recorder
  (`_can_record_outputs["attentions"]`), through a forward hook that converts them to float16 on the CPU as
  soon as the layer is done and drops the float32 original, so a 1024-token capture of a 30-layer model never
  holds more than one layer in float32 (besides the eager attention's own scratch: SCRATCH_LAYERS).
- Memory: every layer is copied into one (L, H, T, T) float16 block allocated up front. An allocation that
  size is its own mapping, handed back to the OS whole when the capture is dropped; thirty layer-sized ones
  were carved from glibc's heaps among the forward's float32 scratch, and those heaps only grew. After each
  forward, the scratch's freed pages are handed back too (malloc_trim). Eight 961-token captures under a
  2 GB cache (4 kept, 1.9 GB counted), default model, one process, on a worker thread as Django runs views:
  RSS 0.8 GB -> 4.2 GB before (1.5 GB more than the cache counted), 0.8 GB -> 2.7 GB now (0.04 GB more;
  `python -m bench attention_memory`).
- Pieces: a uint8 overview (every head max-pooled to at most 64x64 bins) for the model view, and float16
  bytes of one head or of a layer's mean over heads, on demand. Never JSON arrays of numbers.

Shapes: L layers, H query heads, KV key/value heads, T tokens; a layer is (H, T, T), rows are queries (the
token that looks), columns are keys (the token looked at), and every row sums to 1.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import math
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from llmcore.encoding import encode_chat, encode_text
from llmcore.errors import UserError
from llmcore.tokenize import token_display

OVERVIEW_SIZE = 64  # the model view draws each head from at most 64x64 pooled cells
# Layer-sized float32 tensors alive at once inside an eager attention forward (scores, masked scores,
# softmax), counted as a running capture's scratch.
SCRATCH_LAYERS = 3
_CAPTURE_LOCK = threading.Lock()
_TWINS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class AttentionInputError(UserError, ValueError):
    """The input cannot be captured (too long, empty...); the message says why, for the user."""


class AttentionUnsupported(UserError, RuntimeError):
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
    layers: list[torch.Tensor]  # L tensors, each (H, T, T) float16 (views into one block)
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
        """Bytes this capture keeps alive: the storage under every tensor it holds, each storage once."""
        return storage_nbytes([*self.layers, self.overview])

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


def storage_nbytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes of the storages under `tensors`: a view keeps its whole storage alive, so that is what counts."""
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[(storage.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


@dataclass(frozen=True)
class CaptureSize:
    """What a capture of T tokens will take: `kept` bytes (float16 weights and the uint8 overview) and, while
    its forward runs, `scratch` bytes of float32 besides."""

    kept: int
    scratch: int

    @property
    def peak(self) -> int:
        return self.kept + self.scratch


def capture_size(model: Any, num_tokens: int, overview_size: int = OVERVIEW_SIZE) -> CaptureSize:
    config = _text_config(model.config)
    layers, heads, t = int(config.num_hidden_layers), int(config.num_attention_heads), num_tokens
    side = math.ceil(t / overview_bin(t, overview_size))
    return CaptureSize(
        kept=layers * heads * (t * t * 2 + side * side), scratch=SCRATCH_LAYERS * heads * t * t * 4
    )


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


def _text_config(config: Any) -> Any:
    """The text model's config (a multimodal config nests it; a text model's config is it)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _kv_heads(config: Any) -> int:
    text = _text_config(config)
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
    _return_free_memory()
    expected = getattr(twin.config.get_text_config(), "num_hidden_layers", captured)
    if captured != expected:
        raise AttentionUnsupported(f"Captured {captured} attention layers, expected {expected}.")
    return twin.config, seconds


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to hand back this way
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def _return_free_memory() -> None:
    """Hand the pages the forward's float32 scratch freed back to the OS. glibc keeps freed blocks under
    32 MiB in its heaps (a 961-token float32 layer of the default model is 33.2 million bytes, just under)
    and rarely returns them, so without this the process keeps growing from capture to capture."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


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
    num_layers = int(_text_config(model.config).num_hidden_layers)
    block: torch.Tensor | None = None  # (L, H, T, T) float16: one allocation for the whole capture

    def keep(weights: torch.Tensor) -> None:  # (H, T, T)
        nonlocal block
        if block is None:
            block = torch.empty((num_layers, *weights.shape), dtype=torch.float16)
        if len(layers) == num_layers:
            raise AttentionUnsupported(f"{type(model).__name__} has more attention layers than it declares.")
        layers.append(block[len(layers)].copy_(weights))
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
class CaptureTooBig(AttentionInputError):
    """One capture would take more memory than the whole cache may hold."""


class CaptureBusy(UserError, RuntimeError):
    """Other captures hold every running slot, or the memory this one needs, for longer than it may wait."""


class CaptureCache:
    """The few most recent captures, least recently used evicted first, bounded by count and by bytes, and
    the admission of new ones: at most `max_running` captures run at once, and each reserves its peak
    bytes (capture_size) before its forward starts, so what is kept plus what is being made stays within
    `max_bytes`. Each capture belongs to an owner (a user id); another owner asking for it is told it does
    not exist.

        with cache.reserve(capture_size(model, T).peak, timeout=5) as room:
            room.keep(capture_attention(...), owner)
    """

    def __init__(self, max_captures: int = 6, max_bytes: int = 2 << 30, max_running: int = 2) -> None:
        self.max_captures, self.max_bytes, self.max_running = max_captures, max_bytes, max_running
        self._items: OrderedDict[str, tuple[Any, AttentionCapture, int]] = OrderedDict()
        self._kept = 0  # sum of the kept captures' nbytes
        self._reserved = 0  # peak bytes of the captures running now
        self._room = threading.Condition()
        self._slots = threading.BoundedSemaphore(max_running)

    @contextmanager
    def reserve(self, nbytes: int, timeout: float = 0.0) -> Iterator[_Room]:
        """A running slot and `nbytes` of room for one capture, for the duration of the block. Evicts the
        least recently used captures to make the room; raises CaptureTooBig for more than the whole cache,
        CaptureBusy when no slot or no room frees up within `timeout` seconds."""
        if nbytes > self.max_bytes:
            raise CaptureTooBig(
                f"This capture would take {_mb(nbytes)} of memory; this server keeps at most "
                f"{_mb(self.max_bytes)} of attention captures. Use a shorter text."
            )
        deadline = time.monotonic() + timeout
        if not self._slots.acquire(timeout=max(0.0, timeout)):
            raise CaptureBusy(_BUSY)
        try:
            with self._room:
                while self._items and self._kept + self._reserved + nbytes > self.max_bytes:
                    self._evict_oldest()
                while self._kept + self._reserved + nbytes > self.max_bytes:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise CaptureBusy(_BUSY)
                    self._room.wait(left)
                    while self._items and self._kept + self._reserved + nbytes > self.max_bytes:
                        self._evict_oldest()
                self._reserved += nbytes
            room = _Room(self, nbytes)
            try:
                yield room
            finally:
                room.release()
        finally:
            self._slots.release()

    def put(self, capture: AttentionCapture, owner: Any = None) -> str:
        """Keep a capture, evicting the least recently used ones to stay within the bounds."""
        nbytes = capture.nbytes
        if nbytes > self.max_bytes:
            raise CaptureTooBig(
                f"This capture takes {_mb(nbytes)}, more than the {_mb(self.max_bytes)} kept."
            )
        with self._room:
            self._items[capture.capture_id] = (owner, capture, nbytes)
            self._kept += nbytes
            while len(self._items) > 1 and (
                len(self._items) > self.max_captures or self._kept + self._reserved > self.max_bytes
            ):
                self._evict_oldest()
            self._room.notify_all()
        return capture.capture_id

    def get(self, capture_id: str, owner: Any = None) -> AttentionCapture | None:
        with self._room:
            item = self._items.get(capture_id)
            if item is None or item[0] != owner:
                return None
            self._items.move_to_end(capture_id)
            return item[1]

    def total_bytes(self) -> int:
        """Bytes the kept captures hold (each capture's nbytes, counted when it was kept)."""
        with self._room:
            return self._kept

    def reserved_bytes(self) -> int:
        with self._room:
            return self._reserved

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._room:
            self._items.clear()
            self._kept = 0
            self._room.notify_all()

    def _evict_oldest(self) -> None:
        _, (_, _, nbytes) = self._items.popitem(last=False)
        self._kept -= nbytes
        self._room.notify_all()

    def _release(self, nbytes: int) -> None:
        with self._room:
            self._reserved -= nbytes
            self._room.notify_all()


class _Room:
    """One running capture's reservation; keep() trades it for the finished capture, atomically."""

    def __init__(self, cache: CaptureCache, nbytes: int) -> None:
        self._cache, self._nbytes = cache, nbytes

    def keep(self, capture: AttentionCapture, owner: Any = None) -> str:
        self.release()
        return self._cache.put(capture, owner)

    def release(self) -> None:
        if self._nbytes:
            nbytes, self._nbytes = self._nbytes, 0
            self._cache._release(nbytes)


_BUSY = "The server is busy with other attention captures; try again in a few seconds."


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.0f} MB"


def rows_sum_error(capture: AttentionCapture) -> float:
    """The largest distance of any row's sum from 1 (a self-check: softmax rows sum to 1)."""
    worst = 0.0
    for layer in capture.layers:
        worst = max(worst, float((layer.float().sum(dim=-1) - 1).abs().max()))
    return worst if math.isfinite(worst) else math.inf
