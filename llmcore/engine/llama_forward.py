"""A lean forward pass for Llama-shaped models (Llama, Mistral without a window, Qwen2, SmolLM), the
engine's hot path.

transformers' forward is general: per layer it goes through several wrapper layers (deprecation shims,
output capture, keyword plumbing, mask preparation) that cost more than the arithmetic of a small
model's decode step. This is the same computation - the model's own modules for embeddings, norms,
projections, MLP, rotary tables and head, and transformers' own `apply_rotary_pos_emb` - written as
gpt-fast writes it: one function, the cache rows and the mask passed in. `python -m bench engine`
("forward") measures both on the same batch; models of other shapes, eager attention and anything this
function does not know run transformers' forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

SUPPORTED = {"llama", "mistral", "qwen2"}


def supports(model: Any, attention: str) -> bool:
    config = model.config
    if getattr(config, "model_type", "") not in SUPPORTED or attention == "eager":
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return getattr(config, "model_type", "") != "mistral"  # a window changes the mask: not here
    inner = getattr(model, "model", None)
    return inner is not None and hasattr(inner, "layers") and hasattr(inner, "rotary_emb")


def forward(
    model: Any,
    inputs: dict[str, torch.Tensor],
    mask: torch.Tensor,
    positions: torch.Tensor,
    cache: Any,
    keep: int,
    select: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits (B, keep, V) of the last `keep` positions, or with `select` (B,) of position select[b] of
    each row b (B, 1, V); `cache.update` stores each layer's keys and values exactly as transformers'
    attention would hand them over."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    inner = model.model
    ids = inputs.get("input_ids")
    h = inner.embed_tokens(ids) if ids is not None else inputs["inputs_embeds"]
    batch, length, _ = h.shape
    cos, sin = inner.rotary_emb(h, position_ids=positions)
    for index, layer in enumerate(inner.layers):
        attention = layer.self_attn
        x = layer.input_layernorm(h)
        shape = (batch, length, -1, attention.head_dim)
        q = attention.q_proj(x).view(shape).transpose(1, 2)
        k = attention.k_proj(x).view(shape).transpose(1, 2)
        v = attention.v_proj(x).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k, v = cache.update(k, v, index)
        out = functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=attention.scaling, enable_gqa=k.shape[1] != q.shape[1]
        )
        h = h + attention.o_proj(out.transpose(1, 2).reshape(batch, length, -1))
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    h = h[torch.arange(batch), select][:, None] if select is not None else h[:, -keep:]
    return model.lm_head(inner.norm(h))
