"""A faster copy of a model for the chat engine on CPU: weights packed for PyTorch's CPU integer kernels.

A model imported from a 4-bit GGUF file (the default model is Q4_1) is stored dequantized, in float32: in
every group of 32 weights of a row, each weight is `d * q + m` with q in 0..15. Decoding one token reads
every weight once, so on a CPU a float32 step is bound by moving ~4 bytes per weight through memory. Here
each linear layer whose weights lie exactly on such a grid is repacked to its 4-bit codes (half a byte per
weight) and multiplied with PyTorch's CPU int4 kernel (`_weight_int4pack_mm_for_cpu`, the kernel torchao's
CPU int4 tensor uses); layers that are not on a grid stay as they are. The output head (the default
model's Q8_0 embedding table, 8-bit) is multiplied in float16, which keeps each weight to about 1 part in
2,000, and recomputed in float32 if float16 ever overflows.

Why this is not torchao's `Int4OpaqueTensor`: it computes its own scales and zero points and stores them in
the activation dtype (bfloat16), which moves every weight of a model that is already 4-bit - on the
default model top-1 agreement with float32 drops to 97.6 % (KL 1.3e-3). Here the codes and zero points
are read off the weights exactly, the kernel gets the scales with zero points of 0, and the zero-point
term (sum over a group of the inputs, times the group's zero point) is added in float32. What is left of
the difference: the kernel reads each scale in bfloat16 (a weight moves by at most 1/64 of its grid step)
and rounds each layer's input to bfloat16. On the default model, over 1,024 tokens of the held-out text,
top-1 agreement with float32 is 99.2 % and mean KL 2e-4; perplexity moves by -0.06 % (`python -m bench
chat` records these beside the speeds).

Quantized children (llmcore.quantize) hold torchao tensor subclasses, whose own CPU dispatch turns the
integer weights back into floats on every call (slower than the float32 parent). Their integer data is
read off the subclass exactly and handed to PyTorch's kernels instead: int8 weight-only (`Int8Tensor`,
one scale per row) to `_weight_int8pack_mm` with the scales applied in float32 afterwards; int4
(`IntxUnpackedToInt8Tensor`, group scales) to the int4 kernel as above, codes and zero points unchanged;
int8 dynamic (`Int8Tensor` with per-row symmetric activation quantization) to `torch._int_mm` after
quantizing each input row the way torchao does. `python -m bench quantize_speed` measures them against
the float parent in one run.

Each kind of layer is checked once against the float computation it replaces (for a torchao layer, its
own dequantized weight; for dynamic int8, torchao's own product) before the copy is used; if a kernel
disagrees, the engine runs the loaded model unchanged and the reason is recorded.

The copy shares every tensor it does not repack (embeddings, norms, unpacked layers, int8 codes) with the
loaded model, which other pages keep using: the packed copy belongs to the engine alone. Nothing here is
saved: the store keeps the weights as they were.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

GROUP_SIZE = 32  # the block size of GGUF's Q4_0, Q4_1 and Q4_K sub-blocks
LEVELS = 15  # 4 bits: codes 0..15
# A weight is "on the grid" when rebuilding it from (code, scale, min) is off by at most this much of a
# step: float rounding of d * q + m, never a real difference (a float32 weight off the grid is off by
# about a quarter of a step).
GRID_TOLERANCE = 1e-3
MODES = ("auto", "off")
# How a layer is multiplied once packed; a DecodeInfo's kind is one of these, "mixed-packed" or "float".
INT4 = "int4-packed"
INT8 = "int8-packed"
INT8_DYNAMIC = "int8-dynamic-packed"
KERNEL_LABELS = {INT4: "4-bit packed", INT8: "int8 packed", INT8_DYNAMIC: "int8 dynamic packed"}
# Where packed weights came from (DecodeInfo.source).
FROM_GRID = "float32 weights on a 4-bit grid"
FROM_TORCHAO = "torchao quantized weights"
# Relative error (Frobenius) of a packed layer against the float computation it replaces, above which
# packing is refused: the kernels round inputs to bfloat16 (about 0.3 %); a misread layout is off by
# far more.
SELF_CHECK_TOLERANCE = 2e-2
# With `dense` (the engine's copy), a 4-bit layer also keeps its weights in bfloat16, and every prompt
# pass (see prompt_pass) and a decode pass of this many rows or more uses them. PyTorch's CPU int4 kernel
# is a loop of matrix-vector products: its time grows with the rows, while a bfloat16 product (oneDNN,
# AMX where the CPU has it) reads the weights once for all of them, at four times the bytes. Measured on
# the default model (2-core CPU, one thread, a whole decode pass), int4 alone / with bfloat16 from here:
# 6 rows 49 / 62 ms, 8 rows 56 / 64, 16 rows 88 / 77; a 512-token prompt 1,635 / 444 ms
# (`python -m bench engine`, "dense"). The copy costs 2 bytes per weight (212 MB on the default model).
DENSE_ROWS = 12
_passes = threading.local()  # .prompt: this thread computes a prompt pass (see prompt_pass)


@contextlib.contextmanager
def prompt_pass() -> Iterator[None]:
    """Within this block (a prompt pass), 4-bit layers with a bfloat16 copy use it whatever the rows. A
    prompt's keys and values then do not depend on how it was split: a prefix-cache hit computes only a
    prompt's tail, maybe under DENSE_ROWS tokens, and must give what the whole pass gave (the bfloat16
    product of a row does not depend on the other rows; a replay with the same seed repeats an answer)."""
    before = getattr(_passes, "prompt", False)
    _passes.prompt = True
    try:
        yield
    finally:
        _passes.prompt = before


@dataclass(frozen=True)
class DecodeInfo:
    """How the engine multiplies: what a saved answer records and the chat page shows."""

    kind: str  # "float" (the loaded model as it is), one of KERNEL_LABELS' keys, or "mixed-packed"
    packed_layers: int = 0
    linear_layers: int = 0
    head: str = ""  # the output head's dtype when it was changed, else ""
    seconds: float = 0.0  # time taken to pack
    reason: str = ""  # why nothing was packed
    extra_bytes: int = 0  # memory the packed copy adds beside the loaded model
    # FROM_GRID or FROM_TORCHAO (both, comma-separated, for a mix); for "float", FROM_TORCHAO when the
    # model as it is holds torchao weights, else ""
    source: str = ""
    kernels: tuple[tuple[str, int], ...] = ()  # (kind, layers) per kernel used, most layers first
    dense_rows: int = 0  # products over this many rows use bfloat16 copies of the 4-bit layers (0: never)

    @property
    def label(self) -> str:
        if self.kind == "float":
            return "torchao weights on torchao's kernels" if self.source == FROM_TORCHAO else "float weights"
        counts = f"{self.packed_layers} of {self.linear_layers} layers"
        if self.kind in KERNEL_LABELS:
            return f"{KERNEL_LABELS[self.kind]} ({counts})"
        parts = ", ".join(f"{n} {KERNEL_LABELS.get(k, k)}" for k, n in self.kernels)
        return f"packed: {parts} ({counts})"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "packed_layers": self.packed_layers,
            "linear_layers": self.linear_layers,
            "head": self.head,
            "reason": self.reason,
            "source": self.source,
            "dense_rows": self.dense_rows,
        }


class PackedInt4Linear(nn.Module):
    """y = x W^T (+ b) for W = (codes - 8) * scale + zero per group: codes packed for the CPU int4
    kernel, zero points added in float32 (skipped when every one is 0, as in symmetric int4)."""

    packed: torch.Tensor
    scale_zero: torch.Tensor
    zeros_t: torch.Tensor | None
    dense: torch.Tensor | None

    def __init__(
        self,
        linear: nn.Linear,
        codes: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor,
        group_size: int = GROUP_SIZE,
        dense: bool = False,
    ):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.group_size = group_size
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1), False)
        # The kernel computes (q - 8) * scale + zero per group; zero is 0 here and added below in float32.
        # (K / group, N, 2) of bfloat16, the layout the kernel reads.
        scale_zero = torch.stack(
            [scales.to(torch.bfloat16), torch.zeros_like(scales, dtype=torch.bfloat16)], -1
        )
        self.register_buffer("scale_zero", scale_zero.transpose(0, 1).contiguous(), False)
        # w = (q - 8) * d + zero: `zeros` (m + 8 d for a Q4_1 grid) in float32, (K / group, N).
        has_zeros = bool(zeros.any())
        self.register_buffer("zeros_t", zeros.float().t().contiguous() if has_zeros else None, False)
        self.bias = linear.bias

        # dense: the same weights in bfloat16 for products over DENSE_ROWS rows (see add_dense_weights),
        # as the kernel rebuilds them (its bfloat16 scale, the float32 zero point), rounded to bfloat16
        rebuilt = None
        if dense:
            n, k = codes.shape
            steps = (codes.view(n, k // group_size, group_size) - 8).float()
            rebuilt = steps * scales.to(torch.bfloat16).float()[..., None] + zeros.float()[..., None]
            rebuilt = rebuilt.view(n, k).to(torch.bfloat16)
        self.register_buffer("dense", rebuilt, False)

    def _int4(self, flat: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            flat.to(torch.bfloat16), self.packed, self.group_size, self.scale_zero
        ).float()
        if self.zeros_t is not None:
            group_sums = flat.float().view(len(flat), -1, self.group_size).sum(-1)  # (M, K / group)
            y = torch.addmm(y, group_sums, self.zeros_t)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.dense is not None and (len(flat) >= DENSE_ROWS or getattr(_passes, "prompt", False)):
            y = nn.functional.linear(flat.to(torch.bfloat16), self.dense).float()
        else:
            y = self._int4(flat)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


class PackedInt8Linear(nn.Module):
    """y = x W^T (+ b) for W = (q - zero) * scale per output row, q int8: the CPU int8 kernel with unit
    scales (its fast path takes bfloat16 inputs), the row scales and zero points applied in float32."""

    qdata: torch.Tensor
    ones: torch.Tensor
    scale: torch.Tensor
    zero_scale: torch.Tensor | None

    def __init__(
        self, linear: nn.Linear, qdata: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None
    ):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.register_buffer("qdata", qdata, False)  # (N, K) int8: the child's own codes, not a copy
        self.register_buffer("ones", torch.ones(len(qdata), dtype=torch.bfloat16), False)
        self.register_buffer("scale", scale.float().reshape(-1).contiguous(), False)  # (N,)
        has_zero = zero is not None and bool(zero.any())
        zero_scale = (zero.float().reshape(-1) * self.scale) if has_zero and zero is not None else None
        self.register_buffer("zero_scale", zero_scale, False)  # (N,): x.(q - z)s = s x.q - z s sum(x)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.ops.aten._weight_int8pack_mm(flat.to(torch.bfloat16), self.qdata, self.ones).float()
        y = y * self.scale
        if self.zero_scale is not None:
            y = y - flat.float().sum(-1, keepdim=True) * self.zero_scale
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


class DynamicInt8Linear(nn.Module):
    """y = x W^T (+ b) with each input row quantized to int8 on the fly (symmetric, scale max|x| / 127.5,
    as torchao's int8 dynamic activation quantization does) and an int8 x int8 product (`torch._int_mm`)."""

    qdata_t: torch.Tensor
    scale: torch.Tensor

    def __init__(self, linear: nn.Linear, qdata: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.register_buffer("qdata_t", qdata.t(), False)  # (K, N) view of the child's own (N, K) codes
        self.register_buffer("scale", scale.float().reshape(-1).contiguous(), False)  # (N,)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float()
        row_scale = (flat.abs().amax(-1, keepdim=True) / 127.5).clamp_min(torch.finfo(torch.float32).eps)
        codes = torch.clamp(torch.round(flat * (1.0 / row_scale)), -128, 127).to(torch.int8)
        y = torch._int_mm(codes, self.qdata_t).float() * row_scale * self.scale
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


class Float16Head(nn.Module):
    """The output head in 16 bits (half the bytes to read per token); float32 again if that overflows.

    One row (a single stream's decode step) is multiplied in float16, which keeps each weight to about
    1 part in 2,000; several rows (a batched step, a whole prompt) in bfloat16, whose CPU matrix product
    is the fast one there. Measured on a 2-core CPU for the default model's head (49,152 x 576),
    float16 / bfloat16 / float32 per step: 1 row 2.7 / 3.6 / 7.6 ms, 8 rows 21.5 / 4.5 / 15.3 ms,
    16 rows 44 / 5.3 / 21 ms. Against float32 on the held-out text, bfloat16: top-1 agreement 100 %,
    mean KL 7.7e-4 (float16: 3.6e-4), perplexity unchanged to three decimals.
    """

    weight16: torch.Tensor
    weight_bf16: torch.Tensor

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear  # kept (shared with the loaded model) for the float32 fallback
        self.register_buffer("weight16", linear.weight.detach().to(torch.float16), False)
        self.register_buffer("weight_bf16", linear.weight.detach().to(torch.bfloat16), False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[:-1].numel()
        weight = self.weight16 if rows == 1 else self.weight_bf16
        bias = None if self.bias is None else self.bias.to(weight.dtype)
        y = nn.functional.linear(x.to(weight.dtype), weight, bias).to(x.dtype)
        # Any inf or NaN makes the sum non-finite: one reduction instead of three passes over the logits
        # (8 rows of the default model's vocabulary: 0.02 ms instead of 0.84). A sum that overflows on
        # finite logits only costs the float32 product.
        if not bool(torch.isfinite(y.sum())):  # checked in x's dtype: 16-bit checks are slow on a CPU
            return self.linear(x)
        return y


def on_grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(codes int32 (N, K), scales (N, K/32), zero points (N, K/32)) such that, per group of 32,
    weight == (codes - 8) * scale + zero exactly up to float rounding; None when the weight is not on a
    4-bit grid. The grid's step and offset are the group's (max - min) / 15 and min, as Q4 quantizers set
    them (the largest weight gets code 15, the smallest code 0)."""
    if weight.dim() != 2 or weight.shape[1] % GROUP_SIZE or weight.shape[1] % 2:
        return None
    n, k = weight.shape
    groups = weight.detach().float().view(n, k // GROUP_SIZE, GROUP_SIZE)
    low = groups.amin(-1)
    step = (groups.amax(-1) - low) / LEVELS
    safe = torch.where(step > 0, step, torch.ones_like(step))
    codes = torch.round((groups - low[..., None]) / safe[..., None]).clamp(0, LEVELS)
    rebuilt = codes * step[..., None] + low[..., None]
    if bool(((rebuilt - groups).abs() > GRID_TOLERANCE * safe[..., None]).any()):
        return None
    return codes.view(n, k).to(torch.int32), step, low + 8 * step


# What a packed layer is checked against: the float computation it stands for, on an input (M, K).
Reference = Callable[[torch.Tensor], torch.Tensor]


def torchao_plan(linear: nn.Linear, dense: bool = False) -> tuple[nn.Module, str, Reference] | None:
    """(packed module, kind, reference) for a Linear whose weight is a torchao tensor subclass this
    module can read exactly; None for anything else (it then runs as torchao dispatches it)."""
    weight = linear.weight.data if isinstance(linear.weight, nn.Parameter) else linear.weight
    cls = type(weight)
    if not cls.__module__.startswith("torchao.") or not hasattr(weight, "__tensor_flatten__"):
        return None
    qdata = getattr(weight, "qdata", None)
    scale = getattr(weight, "scale", None)
    zero = getattr(weight, "zero_point", None)
    block = list(getattr(weight, "block_size", None) or ())
    if not isinstance(qdata, torch.Tensor) or not isinstance(scale, torch.Tensor) or qdata.dim() != 2:
        return None
    n, k = qdata.shape
    if qdata.dtype != torch.int8 or (n, k) != (linear.out_features, linear.in_features) or len(block) != 2:
        return None
    if zero is not None and (not isinstance(zero, torch.Tensor) or zero.shape != scale.shape):
        return None

    def dequantized(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, weight.dequantize().float(), linear.bias)

    if cls.__name__ == "Int8Tensor" and block == [1, k] and scale.numel() == n:
        if getattr(weight, "act_pre_scale", None) is not None:
            return None  # inputs rescaled first (AWQ, SmoothQuant): not read here
        act = getattr(weight, "act_quant_kwargs", None)
        if act is None:
            return PackedInt8Linear(linear, qdata.contiguous(), scale, zero), INT8, dequantized
        symmetric_rows = (
            getattr(getattr(act, "mapping_type", None), "name", "") == "SYMMETRIC"
            and type(getattr(act, "granularity", None)).__name__ == "PerRow"
            and not getattr(act, "reduce_range", False)
            and getattr(weight, "act_quant_scale", None) is None  # static activation scales: not read
        )
        if symmetric_rows and (zero is None or not bool(zero.any())):

            def torchao_own(x: torch.Tensor) -> torch.Tensor:
                return nn.functional.linear(x, linear.weight, linear.bias)

            return DynamicInt8Linear(linear, qdata.contiguous(), scale), INT8_DYNAMIC, torchao_own
        return None
    if (
        cls.__name__ == "IntxUnpackedToInt8Tensor"
        and str(getattr(weight, "target_dtype", "")) == "torch.int4"
        and getattr(weight, "activation_quantization", None) is None
        and block[0] == 1
        and k % block[1] == 0
        and scale.shape == (n, k // block[1])
    ):
        group = block[1]
        low, high = torch.aminmax(qdata)
        if int(low) < -8 or int(high) > 7:
            return None
        codes = qdata.to(torch.int32) + 8  # the kernel's codes 0..15 stand for q - 8
        zeros = torch.zeros_like(scale) if zero is None else -zero.float() * scale.float()
        packed = PackedInt4Linear(linear, codes, scale.float(), zeros, group_size=group, dense=dense)
        return packed, INT4, dequantized
    return None


def pack_for_decode(model: Any, mode: str = "auto", dense: bool = False) -> tuple[Any, DecodeInfo]:
    """The model the engine should run and how it multiplies. `mode` "off", a model off the CPU, not in
    float32, or with no layer on a 4-bit grid or quantized by torchao in a way read here: the model
    itself, unchanged. Otherwise a copy that shares the loaded model's tensors, those linear layers
    packed and its output head in float16; with `dense`, 4-bit layers also keep bfloat16 weights for
    products over DENSE_ROWS rows."""
    if mode not in MODES:
        raise ValueError(f"the decode mode is one of {', '.join(MODES)}, not {mode!r}")
    started = time.perf_counter()
    if mode == "off":
        return model, _as_loaded(model, "packed decode is off (ENGINE_PACKED_DECODE=off)")
    weight = model.get_input_embeddings().weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return model, _as_loaded(model, f"only float32 models on the CPU are packed ({weight.dtype})")
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        return model, _as_loaded(model, "this PyTorch has no CPU int4 kernel")

    head = model.get_output_embeddings()
    plans: dict[str, tuple[nn.Module, str]] = {}  # packed one by one: int32 codes are big
    checks: dict[str, tuple[Reference, nn.Module]] = {}  # the first layer of each kind, checked below
    sources: set[str] = set()
    linear_layers = 0
    for name, module in model.named_modules():
        if type(module) is not nn.Linear or module is head:
            continue
        linear_layers += 1
        try:
            plan = _plan(module, dense)
        except (RuntimeError, NotImplementedError):  # a shape the packing op refuses: stays as it is
            continue
        if plan is None:
            continue
        packed, kind, reference, source = plan
        plans[name] = (packed, kind)
        checks.setdefault(kind, (reference, packed))
        sources.add(source)
    if not plans:
        reason = "no linear layer is on a 4-bit grid or quantized in a way the CPU kernels read"
        return model, _as_loaded(model, reason, linear_layers)
    for kind, (reference, packed) in checks.items():
        problem = _self_check(reference, packed, kind)
        if problem:
            return model, _as_loaded(model, problem, linear_layers)

    # A copy of the module tree that shares every parameter and buffer with the loaded model.
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    fast = copy.deepcopy(model, memo)
    extra = 0
    shared = {_inner_ptr(p) for p in model.parameters()}  # int8 codes a packed layer reads in place
    for name, (packed, _) in plans.items():
        extra += sum(b.numel() * b.element_size() for b in packed.buffers() if b.data_ptr() not in shared)
        _replace(fast, name, packed)
    head_dtype = ""
    fast_head = fast.get_output_embeddings()
    if (
        type(fast_head) is nn.Linear
        and type(fast_head.weight.data) is torch.Tensor  # not a torchao tensor
        and fast_head.weight.dtype == torch.float32
    ):
        fast.set_output_embeddings(Float16Head(fast_head))
        extra += fast_head.weight.numel() * 4  # a float16 and a bfloat16 copy
        head_dtype = "float16 (one row), bfloat16 (more rows)"
    fast.eval()
    kernels = tuple(Counter(kind for _, kind in plans.values()).most_common())
    return fast, DecodeInfo(
        kernels[0][0] if len(kernels) == 1 else "mixed-packed",
        packed_layers=len(plans),
        linear_layers=linear_layers,
        head=head_dtype,
        dense_rows=DENSE_ROWS if dense and INT4 in dict(kernels) else 0,
        seconds=time.perf_counter() - started,
        extra_bytes=extra,
        source=", ".join(sorted(sources)),
        kernels=kernels,
    )


def _as_loaded(model: Any, reason: str, linear_layers: int = 0) -> DecodeInfo:
    """The record for a model run as it is, saying so when its weights are torchao's."""
    torchao = any(
        type(m) is nn.Linear and type(m.weight.data).__module__.startswith("torchao.")
        for m in model.modules()
    )
    return DecodeInfo(
        "float", linear_layers=linear_layers, reason=reason, source=FROM_TORCHAO if torchao else ""
    )


def _plan(linear: nn.Linear, dense: bool) -> tuple[nn.Module, str, Reference, str] | None:
    weight = linear.weight.data
    if type(weight) is not torch.Tensor:
        ao = torchao_plan(linear, dense)
        return None if ao is None else (*ao, FROM_TORCHAO)
    if weight.dtype != torch.float32:
        return None
    grid = on_grid(weight)
    if grid is None:
        return None

    def float32(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, linear.weight, linear.bias)

    return PackedInt4Linear(linear, *grid, dense=dense), INT4, float32, FROM_GRID


def _inner_ptr(param: torch.Tensor) -> int:
    """The storage of a torchao subclass's integer data (shared with a packed int8 layer), else 0."""
    qdata = getattr(param.data, "qdata", None)
    return qdata.data_ptr() if isinstance(qdata, torch.Tensor) else 0


def _self_check(reference: Reference, packed: nn.Module, kind: str = INT4) -> str:
    """'' when the kernel agrees with the float computation it replaces on this layer; else why packing
    is not used (a PyTorch whose kernel reads its operands differently must not produce wrong text)."""
    what = {INT8: "int8", INT8_DYNAMIC: "int8 x int8"}.get(kind, "int4")
    in_features = int(getattr(packed, "in_features"))  # noqa: B009 - every packed module has it
    try:
        x = torch.randn(3, in_features, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            want = reference(x)
            got = packed(x)
    except (RuntimeError, NotImplementedError) as exc:
        return f"the CPU {what} kernel failed: {exc}"
    error = float((got - want).norm() / want.norm().clamp_min(1e-12))
    if error < SELF_CHECK_TOLERANCE:
        return ""
    return f"the CPU {what} kernel disagrees with the weights it packs ({error:.2%})"


def _replace(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
