"""Fewer, larger matrix products per layer in the engine's packed copy of a model.

A decoder layer multiplies the same input by q, k and v, and by gate and up: five products, each with
its own kernel launch, input conversion and zero-point term. Here each group is packed as one int4
matrix (its rows side by side) and computed once; the first projection's module returns its share and
keeps the rest for the modules called next with the same input (transformers' attention and MLP call
q, k, v and gate, up in that order on one tensor). A call with another input computes the group again, so
the result is always right. Measured on the default model (2-core CPU): `python -m bench engine`.

Only for layers the packed copy already packs (llmcore.packed), rebuilt from the loaded model's float
weights on the same 4-bit grid, so the numbers do not change; layers with a bias are left as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from llmcore.packed import PackedInt4Linear, on_grid

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class _Group(nn.Module):
    """The fused product, and what its members' next calls with the same input should return."""

    def __init__(self, packed: PackedInt4Linear, widths: list[int]) -> None:
        super().__init__()
        self.packed = packed
        self.widths = widths
        self._input: torch.Tensor | None = None
        self._parts: tuple[torch.Tensor, ...] = ()

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if index == 0 or self._input is not x:
            self._parts = torch.split(self.packed(x), self.widths, dim=-1)
            self._input = x
        out = self._parts[index]
        if index == len(self.widths) - 1:  # the last member: let go of the input and outputs
            self._input, self._parts = None, ()
        return out


class _Member(nn.Module):
    def __init__(self, group: _Group, index: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.group = group if index == 0 else None  # registered once, under the first member
        self._group = group
        self.index = index
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._group.part(x, self.index)


def fuse_projections(fast: nn.Module, source: nn.Module, dense: bool = False) -> int:
    """Fuse q/k/v and gate/up of every layer of `fast` (the engine's packed copy) whose members are all
    packed, using `source`'s (the loaded model's) float weights (`dense`: as llmcore.packed's). Returns how
    many groups were fused. With `dense`, a group takes its members' bfloat16 copies rather than rebuilding
    them."""
    fused = 0
    for name, module in list(fast.named_modules()):
        for members in GROUPS:
            parts = [getattr(module, m, None) for m in members]
            if not all(isinstance(p, PackedInt4Linear) and p.bias is None for p in parts):
                continue
            originals = [source.get_submodule(f"{name}.{m}" if name else m) for m in members]
            weights: list[torch.Tensor] = [o.weight.detach() for o in originals if isinstance(o, nn.Linear)]
            if len(weights) < len(members) or not all(
                type(w) is torch.Tensor and w.is_floating_point() for w in weights
            ):
                continue  # packed from a quantized child's own integers: nothing float to rebuild from
            weight = torch.cat(weights, dim=0)
            grid = on_grid(weight)
            if grid is None:
                continue
            widths = [int(w.shape[0]) for w in weights]
            shell = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
            copies = [p.dense for p in parts if isinstance(p, PackedInt4Linear) and p.dense is not None]
            reuse = dense and len(copies) == len(parts)
            packed = PackedInt4Linear(shell, *grid, dense=dense and not reuse)
            if reuse:  # the members' copies, rows side by side: the same grid, so the same weights
                packed.dense = torch.cat(copies, dim=0)
            group = _Group(packed, widths)
            for index, member in enumerate(members):
                setattr(module, member, _Member(group, index, weight.shape[1], widths[index]))
            fused += 1
    return fused
