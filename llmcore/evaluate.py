"""Numbers that say how good a model is and how far a derived model moved from its parent.

- `perplexity(loaded, text)`: exp of the mean next-token loss over a text, in overlapping windows that never
  exceed the model's context, so a long text is scored with as much history as the model can see.
- `next_token_agreement(parent, child, prompts)`: how often the two models pick the same most likely next
  token, and the mean KL divergence KL(parent || child) of their next-token distributions, over every
  position of every prompt (not only the last one, so a few prompts already give a stable number).

`HELDOUT_TEXT` is a text written for this project (never part of any training set we ship), used by the
quantize verify report and the compare page. Everything here runs under `torch.inference_mode()` and returns
plain floats, ready for JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from llmcore.encoding import encode_chat
from llmcore.loading import stop_token_ids

HELDOUT_TEXT = Path(__file__).resolve().parent / "data" / "heldout.txt"

# Varied short prompts (instruction, code, dialogue, facts) for agreement and speed measurements.
DEFAULT_PROMPTS = (
    "Explain in two sentences why the sky looks blue during the day.",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Alice: Did you remember to water the plants?\nBob:",
    "The three largest planets in the solar system are",
    "Write a short list of tips for a first visit to a library:\n1.",
    "Once upon a time, in a village at the edge of a forest,",
)


def heldout_text() -> str:
    return HELDOUT_TEXT.read_text(encoding="utf-8")


@torch.inference_mode()
def greedy_answer(
    model: Any,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int,
    model_inputs: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None,
) -> str:
    """The model's greedy answer to one user prompt, as a comparison or a training sample shows it:
    through the chat template when the tokenizer has one (else the text as it is), ending at the model's
    end-of-turn or end-of-text token. `model_inputs` (LoadedModel.model_inputs) turns the ids into the
    model's inputs, a prompt-tuned model's virtual tokens first. The chat's answers come from the engine."""
    if getattr(tokenizer, "chat_template", None):
        ids = torch.tensor([encode_chat(tokenizer, [{"role": "user", "content": prompt}])])
    else:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    ids = ids.to(next(model.parameters()).device)
    inputs = model_inputs(ids) if model_inputs is not None else {"input_ids": ids}
    first = next(iter(inputs.values()))
    stops = stop_token_ids(tokenizer, model)
    out = model.generate(
        **inputs,
        attention_mask=torch.ones(first.shape[:2], dtype=torch.long, device=first.device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stops or None,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops or [0])[0],
    )
    # generate() returns the prompt before the new tokens only when it was given ids, not embeddings.
    new = out[0][ids.shape[1] :] if "input_ids" in inputs else out[0]
    return str(tokenizer.decode(new, skip_special_tokens=True)).strip()


def logits_of(loaded: Any, ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Logits (B, T, V) for token ids (B, T), as the model computes them in use: a prompt-tuned model's
    virtual tokens go first and their positions are dropped from the output."""
    out = loaded.model(**loaded.model_inputs(ids), **kwargs).logits
    return out[:, loaded.virtual_tokens :]


def perplexity(
    loaded: Any,
    text: str,
    max_tokens: int = 4096,
    window: int | None = None,
    stride: int | None = None,
) -> dict[str, float | int]:
    """Perplexity of `text` (its first `max_tokens` tokens) under a loaded causal model.

    The text is scored in windows of `window` tokens (default: the context length, at most 1024 to keep CPU
    runs short) that advance by `stride` (default: half a window); each window scores only the tokens the
    previous one did not, so every token is predicted exactly once, with at least window - stride tokens of
    history once the first window is past. This is the sliding-window method of the transformers
    perplexity guide; it is written out here because transformers has no function for it.
    """
    if max_tokens < 2:
        raise ValueError("max_tokens must be at least 2")
    ctx = loaded.context_length
    window = min(window or min(ctx, 1024), ctx)
    if window < 2:
        raise ValueError("window must be at least 2 tokens")
    stride = stride or max(1, window // 2)
    if not 0 < stride <= window:
        raise ValueError("stride must be between 1 and the window size")
    ids = loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0][:max_tokens]
    bos = getattr(loaded.tokenizer, "bos_token_id", None)
    if bos is not None and (len(ids) == 0 or int(ids[0]) != bos):
        # Start from the beginning-of-sequence token, as in training, so the first token is scored too.
        ids = torch.cat([torch.tensor([bos]), ids])[:max_tokens]
    if len(ids) < 2:
        raise ValueError("The text is too short to measure perplexity (fewer than 2 tokens).")
    ids = ids.to(loaded.device)
    total_nll = 0.0
    counted = 0
    previous_end = 0
    with torch.inference_mode():
        for begin in range(0, len(ids), stride):
            end = min(begin + window, len(ids))
            chunk = ids[begin:end].unsqueeze(0)  # (1, T)
            logits = logits_of(loaded, chunk, use_cache=False)[0].float()  # (T, V)
            # Position t predicts token t + 1; score only targets not scored by an earlier window.
            first_target = max(previous_end, begin + 1)
            targets = ids[first_target:end]
            preds = logits[first_target - begin - 1 : end - begin - 1]
            if len(targets):
                nll = torch.nn.functional.cross_entropy(preds, targets, reduction="sum")
                total_nll += float(nll)
                counted += len(targets)
            previous_end = end
            if end == len(ids):
                break
    loss = total_nll / counted
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": counted, "window": window}


def next_token_agreement(
    parent_loaded: Any, child_loaded: Any, prompts: Sequence[str] = DEFAULT_PROMPTS
) -> dict[str, float | int]:
    """Top-1 agreement and mean KL(parent || child) of next-token distributions, over all prompt positions.

    Both models must share a tokenizer (a quantized or fine-tuned child does): the prompts are tokenized once
    with the parent's tokenizer and fed to both.
    """
    if not prompts:
        raise ValueError("give at least one prompt")
    parent_vocab = parent_loaded.tokenizer.get_vocab()
    if parent_vocab != child_loaded.tokenizer.get_vocab():
        raise ValueError("The two models have different tokenizers; their next tokens cannot be compared.")
    agree = 0
    positions = 0
    kl_sum = 0.0
    with torch.inference_mode():
        for prompt in prompts:
            ids = parent_loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
            p_logits = logits_of(parent_loaded, ids.to(parent_loaded.device))[0].float().cpu()
            c_logits = logits_of(child_loaded, ids.to(child_loaded.device))[0].float().cpu()
            vocab = min(p_logits.shape[-1], c_logits.shape[-1])  # padded embedding tables may differ
            p_log = torch.log_softmax(p_logits[:, :vocab], dim=-1)  # (T, V)
            c_log = torch.log_softmax(c_logits[:, :vocab], dim=-1)
            kl = (p_log.exp() * (p_log - c_log)).sum(-1)  # (T,)
            kl_sum += float(kl.clamp_min(0).sum())
            agree += int((p_log.argmax(-1) == c_log.argmax(-1)).sum())
            positions += p_log.shape[0]
    return {"top1_agreement": agree / positions, "mean_kl": kl_sum / positions, "positions": positions}
