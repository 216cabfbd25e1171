"""Prefill time per attention backend (llmcore.kernels) on the default model: `python -m bench
attention_kernels`.

One forward pass over the first 512, 1,024, 2,048 and 4,096 tokens of the held-out text (repeated to
reach 4,096), float32 on the CPU with the process's threads, only the last position's logits computed
(as a prefill needs), for every backend this machine runs. The backends take turns at each length (so
load from elsewhere on a shared machine slows all of them rather than one), after one warm-up pass each.
512 tokens are timed twice and the best kept, the longer lengths once (`repeats` says so). Every ratio
is against "math" at the same length in the same run. Math and eager attention at 4,096 tokens take a
minute or more each on 2 cores, so a run takes minutes; the JSON records the load average before and
after, since other work on a shared machine slows every backend (the ratios move less than the seconds).

The attention mask is transformers' own for one unpadded sequence (SDPA then runs with is_causal and no
mask); BENCH_ATTENTION_MASK=explicit passes a 4-D additive causal mask instead, as a runner that batches
sequences of different lengths must. No target is enforced; the numbers are recorded.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.common import default_model_store

LENGTHS = (512, 1024, 2048, 4096)
# Timed runs per backend, the best kept: once for the long lengths, which dominate the run's time.
REPEATS = {512: 2, 1024: 1, 2048: 1, 4096: 1}
WARM_UP_TOKENS = 512


def run() -> dict[str, Any]:
    import torch

    from llmcore.evaluate import heldout_text
    from llmcore.kernels import available_backends, describe_attention, prepare_model_attention
    from llmcore.loading import load_model
    from llmcore.pulls import DEFAULT_MODEL

    explicit_mask = os.environ.get("BENCH_ATTENTION_MASK", "") == "explicit"
    loaded = load_model(default_model_store(), DEFAULT_MODEL, device="cpu")
    model = loaded.model  # this process's own copy: switching it to eager and back touches nobody else
    text = heldout_text()
    ids = loaded.tokenizer(text)["input_ids"]
    copies = 1
    while len(ids) < max(LENGTHS):
        copies += 1
        ids = loaded.tokenizer("\n\n".join([text] * copies))["input_ids"]
    tokens = torch.tensor([ids[: max(LENGTHS)]])
    backends = available_backends("cpu")
    load_before = _load_average()

    def prefill(backend: str, length: int) -> float:
        prepare_model_attention(model, backend)
        return _prefill_seconds(model, tokens[:, :length], backend, explicit_mask)

    for backend in backends:
        prefill(backend, WARM_UP_TOKENS)
    seconds: dict[int, dict[str, float]] = {length: {} for length in LENGTHS}
    for length in LENGTHS:
        for _ in range(REPEATS[length]):
            for backend in backends:
                took = prefill(backend, length)
                seconds[length][backend] = min(took, seconds[length].get(backend, float("inf")))
    prepare_model_attention(model, "sdpa-auto")

    results: dict[str, Any] = {}
    for length in LENGTHS:
        anchor = seconds[length].get("math")
        row: dict[str, Any] = {
            backend: {
                "seconds": round(took, 3),
                "ratio_to_math": round(took / anchor, 3) if anchor else None,
                "tokens_per_s": round(length / took, 1),
            }
            for backend, took in seconds[length].items()
        }
        row["fastest"] = min(seconds[length], key=lambda b: seconds[length][b])
        results[str(length)] = row
    auto = describe_attention(model, "sdpa-auto")
    return {
        "model": DEFAULT_MODEL,
        "device": "cpu",
        "dtype": str(model.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "backends": backends,
        "sdpa_auto_choice": auto["auto_choice"],
        "anchor": "math at the same length, same run",
        "text": f"held-out text, {copies} cop{'y' if copies == 1 else 'ies'} joined, first tokens",
        "mask": "explicit 4-D additive causal mask" if explicit_mask else "transformers' own (is_causal)",
        "measured_as": "one forward pass, logits of the last position only, best of `repeats` runs",
        "repeats": {str(length): n for length, n in REPEATS.items()},
        "warm_up": f"one pass of {WARM_UP_TOKENS} tokens per backend",
        "load_average_1min": {"before": load_before, "after": _load_average()},
        "lengths": results,
    }


def _prefill_seconds(model: Any, tokens: Any, backend: str, explicit_mask: bool) -> float:
    import torch

    from llmcore.kernels import attention_context

    extra: dict[str, Any] = {}
    if explicit_mask:
        length = tokens.shape[1]
        future = torch.ones(length, length, dtype=torch.bool).triu(1)  # (T, T): True above the diagonal
        mask = torch.zeros(length, length).masked_fill_(future, torch.finfo(torch.float32).min)
        extra["attention_mask"] = mask[None, None]  # (1, 1, T, T)
    with torch.inference_mode(), attention_context(backend):
        started = time.perf_counter()
        model(tokens, use_cache=True, logits_to_keep=1, **extra)
        return time.perf_counter() - started


def _load_average() -> float | None:
    """The machine's 1-minute load average (other work competing for the cores), where the OS says."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None
