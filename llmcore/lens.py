"""What a causal model predicts next: the next-token logits for a prompt, and the logit lens.

The logit lens (nostalgebraist, 2020) applies the model's final norm and unembedding to the residual
stream after every layer, as if the model stopped there, and shows what it would predict. Positions read
left to right, layers bottom to top; the layer where the final answer first becomes the top prediction
tells how early the model "knows" it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from llmcore.encoding import encode_chat, encode_text
from llmcore.errors import UserError
from llmcore.loading import LoadedModel


class LensError(UserError, ValueError):
    """The model or input cannot be read this way; the message says why, for the user."""


def encode_prompt(loaded: LoadedModel, text: str, as_chat: bool = False) -> list[int]:
    """Token ids of a prompt; as_chat renders it as one user turn through the chat template."""
    tok = loaded.tokenizer
    if as_chat:
        if not loaded.has_chat_template:
            raise LensError(f"{loaded.name} has no chat template; untick 'as chat'.")
        return encode_chat(tok, [{"role": "user", "content": text}])
    return encode_text(tok, text)


def _require_causal(loaded: LoadedModel) -> None:
    if not loaded.is_causal:
        raise LensError(f"{loaded.name} is an encoder: it does not predict a next token.")


@torch.inference_mode()
def next_token_logits(loaded: LoadedModel, ids: list[int]) -> torch.Tensor:
    """Logits (V,) float32 on the CPU for the token after `ids`."""
    _require_causal(loaded)
    if not ids:
        raise LensError("The prompt is empty.")
    input_ids = torch.tensor([ids], device=loaded.device)
    logits = loaded.model(input_ids=input_ids, logits_to_keep=1).logits  # (1, 1, V)
    return logits[0, -1].float().cpu()


@dataclass
class LensCell:
    token_id: int
    prob: float
    top: list[tuple[int, float]]  # the top few (id, probability) at this layer and position


@dataclass
class LensResult:
    ids: list[int]
    layers: int
    grid: list[list[LensCell]]  # [layer][position]; layer 0 is the embeddings, the last is the output
    settled_at: list[int | None]  # per position: first layer whose top-1 is the final top-1


def _final_norm(model: Any) -> torch.nn.Module:
    base = model.base_model
    for name in ("norm", "final_layernorm", "ln_f", "final_layer_norm"):
        module = getattr(base, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise LensError("This architecture's final norm is not one the logit lens knows.")


@torch.inference_mode()
def logit_lens(loaded: LoadedModel, ids: list[int], top_n: int = 5) -> LensResult:
    _require_causal(loaded)
    if not ids:
        raise LensError("The prompt is empty.")
    model = loaded.model
    norm = _final_norm(model)
    head = model.get_output_embeddings()
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    out = model(input_ids=torch.tensor([ids], device=loaded.device), output_hidden_states=True)
    hidden = out.hidden_states  # L + 1 tensors (1, T, D); the last one already has the final norm applied
    grid: list[list[LensCell]] = []
    for layer, states in enumerate(hidden):
        normed = states if layer == len(hidden) - 1 else norm(states)
        logits = head(normed)[0].float()  # (T, V)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        probs = torch.softmax(logits, dim=-1)
        values, indices = torch.topk(probs, top_n, dim=-1)  # (T, top_n)
        grid.append(
            [
                LensCell(
                    token_id=int(indices[t, 0]),
                    prob=float(values[t, 0]),
                    top=[(int(i), float(v)) for i, v in zip(indices[t], values[t], strict=True)],
                )
                for t in range(len(ids))
            ]
        )
    final = [cell.token_id for cell in grid[-1]]
    settled: list[int | None] = []
    for t, answer in enumerate(final):
        settled.append(next((layer for layer in range(len(grid)) if grid[layer][t].token_id == answer), None))
    return LensResult(ids=ids, layers=len(grid) - 1, grid=grid, settled_at=settled)
