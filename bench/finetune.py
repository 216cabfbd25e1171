"""Training throughput on the default model: LoRA and full SFT through `llmcore.finetune.run_finetune`
(transformers Trainer + peft, with progress callbacks and checkpoints), and the same steps through a plain
transformers + peft loop written here for comparison, all in one run on this machine.

Every variant trains on the same sample instruction rows, tokenized the same way, with the same batch size
and sequence limit; tokens/s counts real (non-padding) tokens. The gap between the two is what the job
machinery costs (Trainer bookkeeping, callbacks, the checkpoint at the end).
"""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.common import default_model_store

STEPS = 6
BATCH = 4
MAX_SEQ_LEN = 128


def run() -> dict[str, Any]:
    import torch

    from llmcore.datasets import load_sample
    from llmcore.pulls import DEFAULT_MODEL

    store = default_model_store()
    base_dir = store.path(DEFAULT_MODEL)
    parsed = load_sample("pirate-instructions")
    torch.manual_seed(0)
    result: dict[str, Any] = {
        "model": DEFAULT_MODEL,
        "steps": STEPS,
        "batch_size": BATCH,
        "max_seq_len": MAX_SEQ_LEN,
        "threads": torch.get_num_threads(),
    }
    for method in ("lora", "sft"):
        result[f"{method}_run_finetune_tokens_per_s"] = _through_run_finetune(method, base_dir, parsed)
        result[f"{method}_plain_loop_tokens_per_s"] = _plain_loop(method, base_dir, parsed)
        plain = result[f"{method}_plain_loop_tokens_per_s"]
        result[f"{method}_ratio_vs_plain"] = round(result[f"{method}_run_finetune_tokens_per_s"] / plain, 2)
    return result


def _through_run_finetune(method: str, base_dir: Path, parsed: Any) -> float:
    from llmcore.finetune import FinetuneConfig, run_finetune
    from llmcore.jobs import JobContext

    config = FinetuneConfig(
        method=method,
        base_dir=base_dir,
        steps=STEPS,
        batch_size=BATCH,
        max_seq_len=MAX_SEQ_LEN,
        learning_rate=1e-3 if method == "lora" else 2e-5,
        checkpoint_every=10_000,
        sample_every=0,  # the loop it is compared with generates nothing
    )
    with TemporaryDirectory() as tmp:
        result = run_finetune(config, parsed, Path(tmp) / "out", JobContext(work_dir=Path(tmp) / "work"))
    return float(result.metrics["tokens_per_s"])


def _plain_loop(method: str, base_dir: Path, parsed: Any) -> float:
    """The textbook loop: AdamW, forward, backward, step; the same batches the Trainer would see."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcore.datasets import encode_row

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        from llmcore.finetune import DEFAULT_TARGET_MODULES

        lora = LoraConfig(
            r=8, lora_alpha=16, target_modules=list(DEFAULT_TARGET_MODULES), task_type="CAUSAL_LM"
        )
        model = get_peft_model(model, lora)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rows = [encode_row(tokenizer, row, parsed.format, MAX_SEQ_LEN) for row in parsed.rows]
    tokens, elapsed = 0, 0.0
    for step in range(STEPS):  # every step counts, the first too, as in run_finetune's tokens/s
        batch = rows[(step * BATCH) % len(rows) :][:BATCH]
        width = max(len(r.input_ids) for r in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)  # (B, T)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):
            n = len(r.input_ids)
            ids[i, :n] = torch.tensor(r.input_ids)
            labels[i, :n] = torch.tensor(
                [t if keep else -100 for t, keep in zip(r.input_ids, r.labels_mask, strict=True)]
            )
            mask[i, :n] = 1
        started = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        elapsed += time.perf_counter() - started
        tokens += int(mask.sum())
    return round(tokens / elapsed, 1)
