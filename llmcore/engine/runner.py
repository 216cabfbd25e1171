"""The model runner: one forward pass over a batch of rows of the KV cache, and nothing else.

Two kinds of pass, both through the transformers model with the engine's `SlotCache` as its cache and a
4-D attention mask built here (transformers uses a 4-D mask as given):
- `decode(lengths)`: rows 0..n-1 each add one token at their own position (continuous batching: the rows
  are sequences of different lengths, masked to their own positions);
- `extend(row, start, ids)`: one row adds several tokens (a prefill chunk, or a speculative verification).

Threads: a decode step from a non-main thread is fastest with one CPU thread (PyTorch's OpenMP pool
wakes slowly when the process holds more threads than cores; measured on a 2-core machine, a decode step
of the default model took 25 ms with 2 threads and 15 ms with 1), while a long prefill is worth the
pool (see PARALLEL_PREFILL_TOKENS). ENGINE_THREADS raises the decode count (`make bench` tells).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import torch

from llmcore import kernels
from llmcore.attention import eager_twin
from llmcore.engine import llama_forward
from llmcore.engine.fused import fuse_projections
from llmcore.engine.kv_cache import KVShape, SlotCache, _Plan
from llmcore.loading import LoadedModel
from llmcore.packed import pack_for_decode, prompt_pass

DEFAULT_THREADS = 1
# A forward pass over this many new tokens is big enough work to be worth waking the pool. Measured in
# the engine's own thread (default model, 2 cores, prompts through the bfloat16 copies of
# llmcore.packed), one pass over the prompt at 1 thread / 2 threads: 128 tokens 127 / 167 ms, 256
# tokens 222 / 269 ms, 512 tokens 554 / 503 ms, 1,000 tokens 1.49 / 1.06 s. With the default
# ENGINE_PREFILL_CHUNK (256) every pass stays on one thread.
PARALLEL_PREFILL_TOKENS = 384
# A batched decode pass stays on the decode threads: measured in the engine's own thread (default model,
# 2 cores, 64 tokens each), aggregate tokens/s for 8 / 16 concurrent streams was 115-130 / 146-149 when
# passes of 8+ rows woke the pool and 148-157 / 161-175 when they did not (a bare forward pass on the
# main thread, where the pool is awake, gains a little from it instead: 37.6 / 34.9 ms for 8 rows).


def own_threads(count: int, process: int | None = None) -> None:
    """Give the calling thread `count` CPU threads for PyTorch's parallel work, leaving other threads'.

    torch.set_num_threads sets the calling thread's OpenMP and MKL counts, and also the default that
    threads touching PyTorch for the first time take; a short-lived thread puts that default back to
    `process` (default: the calling thread's count before, right for a thread that has not changed it).
    """
    process = torch.get_num_threads() if process is None else process
    torch.set_num_threads(count)
    if count != process:
        restore = threading.Thread(target=torch.set_num_threads, args=(process,), name="threads-default")
        restore.start()
        restore.join()


class ModelRunner:
    """Owns the model the engine runs (a 4-bit packed copy on CPU, see llmcore.packed) and its KV cache."""

    def __init__(
        self,
        loaded: LoadedModel,
        packed_decode: str = "auto",
        threads: int | None = DEFAULT_THREADS,
        attention: str = "sdpa-auto",
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self.loaded = loaded
        self.device = loaded.device
        self.threads = threads
        self.model, self.decode_info = pack_for_decode(loaded.model, packed_decode, dense=True)
        # Only a packed copy is the engine's own to change; the loaded model is shared with other pages.
        self.fused_groups = (
            fuse_projections(self.model, loaded.model, dense=True) if self.model is not loaded.model else 0
        )
        self.attention = attention
        if attention == "eager" and self.model is loaded.model:
            # switching attention changes the model object, which other pages share: use a twin
            self.model = eager_twin(loaded.model)
        kernels.prepare_model_attention(self.model, attention)  # refuses a kernel this device lacks
        self.shape = KVShape.of(self.model.config, loaded.dtype)
        self.cache = SlotCache(self.shape, self.device)
        config = getattr(self.model.config, "text_config", None) or self.model.config
        layer_types = list(getattr(config, "layer_types", None) or [])
        self.sliding_window: int | None = None
        if "sliding_attention" in layer_types:
            self.sliding_window = int(config.sliding_window)
        # the lean forward for Llama-shaped models, transformers' own for the rest (see llama_forward)
        self.lean = llama_forward.supports(self.model, attention) and self.sliding_window is None
        self.vocab_size = int(self.model.get_input_embeddings().num_embeddings)
        self.virtual_tokens = loaded.virtual_tokens
        self.forward_passes = 0
        self.forward_seconds = 0.0
        self._process_threads: int | None = None
        self._threads_now: int | None = None
        # Measured once, before any sequence holds a row: whether this machine's kernels give a prompt
        # split by a prefix-cache hit what the whole prompt gave (what a replay's report relies on).
        self.split_invariant = self.probe_split()

    # --- passes ---
    def decode(self, last_tokens: list[int], lengths: list[int]) -> torch.Tensor:
        """Rows 0..n-1 each feed their newest token at position lengths[i]: logits (n, V)."""
        n = len(last_tokens)
        positions = torch.tensor(lengths, device=self.device)
        kv_length = max(lengths) + 1
        keys = torch.arange(kv_length, device=self.device)
        allowed = keys[None, :] <= positions[:, None]  # (n, kv)
        mask = self._masks(allowed, positions[:, None] - keys[None, :])
        self.cache.plan = _Plan("decode", rows=n, positions=positions, kv_length=kv_length)
        ids = torch.tensor(last_tokens, device=self.device)[:, None]
        logits = self._forward({"input_ids": ids}, mask, positions[:, None], keep=1)
        return logits[:, -1]

    def extend(
        self, row: int, start: int, ids: list[int], keep: int = 1, prompt: bool = False
    ) -> torch.Tensor:
        """Row `row` feeds `ids` at positions start..: logits of the last `keep` positions (keep, V).
        A row's first pass (start 0) puts a prompt-tuned model's virtual tokens before the ids. `prompt`:
        a chunk of a prompt, computed as every prompt pass is (llmcore.packed.prompt_pass)."""
        tensor = torch.tensor([ids], device=self.device)
        inputs = self.loaded.model_inputs(tensor) if start == 0 else {"input_ids": tensor}
        count = next(iter(inputs.values())).shape[1]
        end = start + count
        query = torch.arange(start, end, device=self.device)
        keys = torch.arange(end, device=self.device)
        distance = query[:, None] - keys[None, :]  # (q, kv)
        mask = self._masks(distance >= 0, distance, one=True)
        self.cache.plan = _Plan("extend", row=row, start=start, count=count, kv_length=end)
        with prompt_pass() if prompt else contextlib.nullcontext():
            logits = self._forward(inputs, mask, query[None, :], keep=keep)
        return logits[0]

    def prefill(self, rows: list[int], starts: list[int], chunks: list[list[int]]) -> torch.Tensor:
        """Several rows each feed their own run of prompt tokens in one pass (padded to the longest; a
        padded position writes a throwaway value past its row's length): logits of each row's last real
        token (rows, V). Not for a row's first pass on a prompt-tuned model (see `extend`)."""
        longest = max(len(c) for c in chunks)
        ids = torch.tensor([c + [0] * (longest - len(c)) for c in chunks], device=self.device)
        offsets = torch.arange(longest, device=self.device)
        start = torch.tensor(starts, device=self.device)
        positions = start[:, None] + offsets[None, :]  # (rows, q)
        # A padded position can lie past the cache's capacity (a row starting late, beside a long
        # chunk): it is written to the last position and reads what is there; no real one ever does.
        kv_length = min(int(positions.max()) + 1, self.cache.capacity)
        keys = torch.arange(kv_length, device=self.device)
        distance = positions[:, :, None] - keys[None, None, :]  # (rows, q, kv)
        mask = self._masks(distance >= 0, distance, per_query=True)
        written = positions.clamp(max=self.cache.capacity - 1)
        row_ids = torch.tensor(rows, device=self.device)
        self.cache.plan = _Plan(
            "prefill", rows=len(rows), positions=written, row_ids=row_ids, kv_length=kv_length
        )
        last = torch.tensor([len(c) - 1 for c in chunks], device=self.device)
        with prompt_pass():
            logits = self._forward({"input_ids": ids}, mask, positions, keep=longest, select=last)
        return logits[:, -1]

    def _masks(
        self, allowed: torch.Tensor, distance: torch.Tensor, one: bool = False, per_query: bool = False
    ) -> Any:
        """Additive 4-D masks (0 or the dtype's minimum; eager attention adds them, SDPA reads them) for
        full attention and, on a model with sliding-window layers, for those too."""
        dtype = self.shape.dtype
        if one:
            batch = lambda m: m[None, None]  # noqa: E731 - (q, kv) -> (1, 1, q, kv)
        elif per_query:
            batch = lambda m: m[:, None]  # noqa: E731 - (rows, q, kv) -> (rows, 1, q, kv)
        else:
            batch = lambda m: m[:, None, None]  # noqa: E731 - (rows, kv) -> (rows, 1, 1, kv)
        full = batch(_additive(allowed, dtype))
        if self.sliding_window is None:
            return full
        near = allowed & (distance < self.sliding_window)
        return {"full_attention": full, "sliding_attention": batch(_additive(near, dtype))}

    def _forward(
        self,
        inputs: dict[str, torch.Tensor],
        mask: Any,
        positions: torch.Tensor,
        keep: int,
        select: torch.Tensor | None = None,
    ):
        """Logits (rows, keep, V); with `select` (rows,), of position select[i] of each row (rows, 1, V)."""
        rows, tokens = next(iter(inputs.values())).shape[:2]
        self._use_threads(rows * tokens)
        started = time.perf_counter()
        with kernels.attention_context(self.attention):
            if self.lean:
                logits = llama_forward.forward(self.model, inputs, mask, positions, self.cache, keep, select)
            else:
                logits = self.model(
                    **inputs,
                    attention_mask=mask,
                    position_ids=positions,
                    cache=self.cache,
                    use_cache=True,
                    logits_to_keep=keep,
                ).logits
                if select is not None:
                    logits = logits[torch.arange(len(select)), select][:, None]
        self.cache.plan = None
        self.forward_passes += 1
        self.forward_seconds += time.perf_counter() - started
        return logits.float()

    def probe_split(self, tokens: int = 48, split: int = 32, prompt: bool = True) -> bool:
        """Whether `tokens` prompt tokens computed in one pass and as `split` tokens, then the rest, give
        bit-identical logits on this machine (in a cache of its own; `prompt` False computes the tail as a
        decode-sized pass would). A bfloat16 product of a row does not depend on the other rows with
        every kernel measured here, but a CPU's library may pick its kernel by the number of rows; a
        replay with the same seed repeats an answer token for token only where this holds."""
        limit = getattr(self.model.config, "max_position_embeddings", None) or tokens + self.virtual_tokens
        tokens = min(tokens, limit - self.virtual_tokens)
        split = min(split, tokens - 1)
        ids = [(7 * i + 3) % self.vocab_size for i in range(tokens)]
        own, self.cache = self.cache, SlotCache(self.shape, self.device)
        before = torch.get_num_threads()
        if self.threads is not None:  # the engine thread's count: a kernel may split its work by it
            own_threads(self.threads, before)
        try:
            self.cache.reserve(2, tokens + self.virtual_tokens)
            with torch.inference_mode():
                whole = self.extend(0, 0, ids, prompt=True)[-1]
                self.extend(1, 0, ids[:split], prompt=True)
                tail = self.extend(1, split + self.virtual_tokens, ids[split:], prompt=prompt)[-1]
            return bool(torch.equal(whole, tail))
        finally:
            self.cache = own
            if self.threads is not None:
                torch.set_num_threads(before)
            self.forward_passes = 0
            self.forward_seconds = 0.0

    # --- threads ---
    def start_thread(self) -> None:
        """Called from the engine's own thread before its first pass."""
        self._process_threads = self._threads_now = torch.get_num_threads()

    def _use_threads(self, tokens: int) -> None:
        if self.threads is None or self._process_threads is None:
            return
        wide = max(self._process_threads, self.threads)
        wanted = wide if tokens >= PARALLEL_PREFILL_TOKENS else self.threads
        if wanted != self._threads_now:
            own_threads(wanted, self._process_threads)
            self._threads_now = wanted

    def describe(self) -> dict[str, Any]:
        return {
            "decode": self.decode_info.as_json(),
            "attention": kernels.describe_attention(self.model, self.attention),
            "fused_projection_groups": self.fused_groups,
            "forward": "lean" if self.lean else "transformers",
            "kv_token_bytes": self.shape.token_bytes,
            "threads": self.threads,
            "split_invariant": self.split_invariant,
        }


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)
