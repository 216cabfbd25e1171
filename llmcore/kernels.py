"""Attention kernels: which implementation of attention a model's forward passes run, as a setting.

transformers computes attention either with PyTorch's `scaled_dot_product_attention` (SDPA, what the
playground loads models with) or with its own eager code (scores = q k^T, softmax, times v: the one
that can hand back the attention weights, which is why llmcore.attention runs an eager twin). SDPA
itself picks a backend on every call among those the device has: math (the same composition in
PyTorch's own ops, any device), flash attention (tiled, never materialising the T x T scores: CUDA,
and on CPUs PyTorch's own CPU flash kernel), memory-efficient attention (CUDA only) and others.

The settings (ATTENTION_BACKENDS):
- "sdpa-auto": SDPA with every backend allowed, PyTorch choosing per call (the default);
- "math", "flash", "efficient": SDPA restricted to that one backend (`torch.nn.attention.sdpa_kernel`).
  A call the backend cannot serve raises instead of quietly running another one: on CUDA, flash takes
  no attention mask, so a padded batch fails under it;
- "eager": transformers' eager attention; the model must be switched (`prepare_model_attention`).

`prepare_model_attention(model, backend)` checks that the backend runs on the model's device and dtype
(a ValueError saying why not) and switches the model between SDPA and eager; then every forward pass
inside `attention_context(backend)` uses that backend. `describe_attention` is what the engine reports.

PyTorch keeps SDPA's backend switches in process-wide state, not per thread. So while a restricting
context is open, only contexts for the same backend open beside it (in any thread); a thread asking for
another backend waits until the last user of the current one leaves. "sdpa-auto" and "eager" change
nothing and never wait; SDPA called outside any context while a restriction is in force (another page's
forward pass in the same process) runs under that restriction too - the restricting settings exist to
measure and compare (`python -m bench attention_kernels`), the default restricts nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from llmcore.errors import UserError
from llmcore.loading import default_dtype

ATTENTION_BACKENDS = ("sdpa-auto", "math", "flash", "efficient", "eager")
DEFAULT_BACKEND = "sdpa-auto"
BACKEND_HELP = {
    "sdpa-auto": "PyTorch's scaled-dot-product attention, choosing its backend on every call",
    "math": "scaled-dot-product attention in plain PyTorch ops (scores materialised)",
    "flash": "flash attention: tiled, the T x T scores never materialised",
    "efficient": "memory-efficient attention (CUDA only)",
    "eager": "transformers' eager attention: matmul, softmax, matmul (scores materialised)",
}
_SDPA_BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
}
_AUTO_CHOICE_NAMES = {
    SDPBackend.MATH: "math",
    SDPBackend.FLASH_ATTENTION: "flash",
    SDPBackend.EFFICIENT_ATTENTION: "efficient",
    SDPBackend.CUDNN_ATTENTION: "cudnn",
}


class AttentionBackendError(UserError, ValueError):
    """An attention backend that is unknown, or that this PyTorch cannot run on the device asked for."""


def check_known(backend: str) -> None:
    if backend not in ATTENTION_BACKENDS:
        raise AttentionBackendError(
            f"Unknown attention backend {backend!r}; choose one of {', '.join(ATTENTION_BACKENDS)}."
        )


def _probe_dtype(device: torch.device) -> torch.dtype:
    return default_dtype(device)


def _why_not(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """'' when `backend` runs a small causal grouped-query call on `device` in `dtype`; else why not."""
    if backend not in _SDPA_BACKENDS:
        return ""
    if backend == "efficient" and device.type != "cuda":
        return f"memory-efficient attention is a CUDA kernel; this is a {device.type} device"
    try:
        q = torch.randn(1, 4, 8, 64, device=device, dtype=dtype)  # (B, H, T, head size)
        kv = torch.randn(1, 2, 8, 64, device=device, dtype=dtype)  # two key/value heads
        with sdpa_kernel(_SDPA_BACKENDS[backend]):
            torch.nn.functional.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
    except (RuntimeError, NotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or ["no reason given"])[0]
        return f"PyTorch {torch.__version__} cannot run it on {device.type} in {dtype}: {first}"
    return ""


_AVAILABLE: dict[tuple[str, torch.dtype], list[str]] = {}


def available_backends(device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> list[str]:
    """The settings this PyTorch runs on `device` for `dtype` (default: the dtype models load in there),
    in ATTENTION_BACKENDS order; each SDPA backend is tried on a small call once per process."""
    device = torch.device(device)
    dtype = dtype or _probe_dtype(device)
    key = (str(device), dtype)
    if key not in _AVAILABLE:
        _AVAILABLE[key] = [b for b in ATTENTION_BACKENDS if not _why_not(b, device, dtype)]
    return list(_AVAILABLE[key])


def check_backend(backend: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> None:
    """Raise AttentionBackendError (a ValueError) with a plain reason unless `backend` runs there."""
    check_known(backend)
    device = torch.device(device)
    dtype = dtype or _probe_dtype(device)
    if backend in available_backends(device, dtype):
        return
    reason = _why_not(backend, device, dtype) or "it failed when tried"
    raise AttentionBackendError(
        f"The {backend!r} attention backend is not available here ({reason}); available: "
        f"{', '.join(available_backends(device, dtype))}."
    )


def _model_place(model: Any) -> tuple[torch.device, torch.dtype]:
    weight = model.get_input_embeddings().weight
    return weight.device, weight.dtype


def model_attention(model: Any) -> str:
    """What transformers runs for this model's attention now: "sdpa", "eager", ..."""
    return str(getattr(model.config, "_attn_implementation", None) or "eager")


def prepare_model_attention(model: Any, backend: str) -> None:
    """Check that `backend` runs on the model's device and dtype and switch the model to the attention
    implementation it needs ("eager" for eager, else "sdpa"). The model itself is switched: give it a
    model this caller owns (the engine's packed copy, or a weight-sharing copy), not one other pages use."""
    device, dtype = _model_place(model)
    check_backend(backend, device, dtype)
    wanted = "eager" if backend == "eager" else "sdpa"
    if model_attention(model) != wanted:
        model.set_attn_implementation(wanted)


_state = threading.Condition()
_in_force: str | None = None  # the restricting backend whose flags are set now
_users = 0  # contexts open on it, in any thread
_restore: Any = None  # the sdpa_kernel context that set the flags; leaving it restores them
_held = threading.local()  # the restricting backend this thread has open, and how deep


@contextmanager
def attention_context(backend: str) -> Iterator[None]:
    """Forward passes inside run SDPA with `backend` only ("sdpa-auto", "eager": no restriction)."""
    check_known(backend)
    if backend not in _SDPA_BACKENDS:
        yield
        return
    mine = getattr(_held, "backend", None)
    if mine is not None and mine != backend:
        raise AttentionBackendError(f"attention_context({backend!r}) inside attention_context({mine!r})")
    _enter(backend)
    _held.backend, _held.depth = backend, getattr(_held, "depth", 0) + 1
    try:
        yield
    finally:
        _held.depth -= 1
        if _held.depth == 0:
            _held.backend = None
        _leave()


def _enter(backend: str) -> None:
    global _in_force, _users, _restore
    with _state:
        _state.wait_for(lambda: _in_force in (None, backend))
        if _in_force is None:
            _restore = sdpa_kernel(_SDPA_BACKENDS[backend])
            _restore.__enter__()
            _in_force = backend
        _users += 1


def _leave() -> None:
    global _in_force, _users, _restore
    with _state:
        _users -= 1
        if _users == 0:
            _restore.__exit__(None, None, None)
            _in_force, _restore = None, None
            _state.notify_all()


def _auto_choice(device: torch.device, dtype: torch.dtype, head_size: int) -> str:
    """The backend PyTorch's own choice picks for a causal prompt on this device ('' if it will not say)."""
    try:
        q = torch.randn(1, 2, 8, head_size, device=device, dtype=dtype)
        index = torch._fused_sdp_choice(q, q, q, is_causal=True)
        return _AUTO_CHOICE_NAMES.get(SDPBackend(index), "")
    except (AttributeError, RuntimeError, ValueError, TypeError):
        return ""


def describe_attention(model: Any, backend: str) -> dict[str, Any]:
    """What the engine reports: the setting, what the model runs, and what this device offers."""
    check_known(backend)
    device, dtype = _model_place(model)
    implementation = model_attention(model)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    head_size = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    auto = _auto_choice(device, dtype, head_size) if backend == "sdpa-auto" else ""
    if backend == "eager":
        label = "eager attention (transformers)"
    elif backend == "sdpa-auto":
        label = "SDPA, PyTorch's choice" + (f" ({auto} for a causal prompt here)" if auto else "")
    else:
        label = f"SDPA, {backend} backend only"
    return {
        "backend": backend,
        "label": label,
        "help": BACKEND_HELP[backend],
        "implementation": implementation,
        # False when the model was not switched to what the backend needs (prepare_model_attention)
        "ready": implementation == ("eager" if backend == "eager" else "sdpa"),
        "auto_choice": auto,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "available": available_backends(device, dtype),
    }
