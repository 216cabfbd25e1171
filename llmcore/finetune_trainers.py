"""The pieces a fine-tuning run trains with; `llmcore.finetune` checks a job, puts them together and
writes the output.

- `load_trainable`: the model a method trains (float32 weights; QLoRA's 4-bit base), wrapped by peft for
  LoRA, QLoRA and prompt tuning;
- `training_args`: the `TrainingArguments` (or trl's `DPOConfig`) of a job's settings;
- `sft_example` and `PaddingCollator`: an SFT row as input ids and labels (-100 where the loss mask of
  `llmcore.datasets.encode_row` is off), and a right-padded batch of them;
- `dpo_trainer` (trl's DPOTrainer on conversational pairs) and `distill_trainer_class` (the distillation
  loss);
- `Progress`, made a TrainerCallback by `progress_callback`: reports each logged step to the job, generates
  samples (`generate_sample`) and stops, saving first, when the job is cancelled.
"""

from __future__ import annotations

import functools
import math
import time
from typing import TYPE_CHECKING, Any

import torch

from llmcore.datasets import encode_row
from llmcore.evaluate import greedy_answer
from llmcore.jobs import JobContext, Update

if TYPE_CHECKING:
    from pathlib import Path

    from llmcore.finetune import FinetuneConfig


# --- the model and the trainers ------------------------------------------------------------------
def load_trainable(config: FinetuneConfig, base_dir: Path, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    common: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False, "use_safetensors": True}
    model: Any
    if config.method == "qlora":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        model = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=quant, **common)
        model = prepare_model_for_kbit_training(model)
    else:
        # float32 weights for training everywhere: bf16 master weights lose small updates; the Trainer uses
        # mixed precision on GPUs instead.
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, **common)
    if config.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    elif config.method == "prompt_tuning":
        from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

        prompt = PromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=config.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
        model = get_peft_model(model, prompt)
    return model


def training_args(
    config: FinetuneConfig,
    ctx: JobContext,
    has_eval: bool,
    cls: Any = None,
    count_tokens: bool = True,
    **extra: Any,
) -> Any:
    """`count_tokens`: the Trainer counts the non-padding tokens of the training batches (kept in its
    state, so a resumed job goes on counting; evaluation batches are not counted)."""
    from transformers import TrainingArguments

    on_gpu = ctx.device.startswith("cuda")
    return (cls or TrainingArguments)(
        output_dir=str(ctx.checkpoint_dir),
        max_steps=config.steps if config.steps is not None else -1,
        num_train_epochs=config.epochs if config.epochs is not None else 1.0,
        learning_rate=config.lr,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=max(1, config.checkpoint_every),
        save_total_limit=2,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=max(1, config.checkpoint_every) if has_eval else None,
        use_cpu=not on_gpu and not ctx.device.startswith("mps"),
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding" if count_tokens else "no",
        **extra,
    )


def sft_example(tokenizer: Any, row: dict[str, Any], fmt: str, max_seq_len: int) -> dict[str, list[int]]:
    encoded = encode_row(tokenizer, row, fmt, max_seq_len)
    labels = [t if keep else -100 for t, keep in zip(encoded.input_ids, encoded.labels_mask, strict=True)]
    return {"input_ids": encoded.input_ids, "labels": labels}


class PaddingCollator:
    """Right-pads a batch (labels with -100, attention mask 0 over the padding)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def dpo_trainer(
    config: FinetuneConfig,
    model: Any,
    tokenizer: Any,
    train_rows: list[Any],
    eval_rows: list[Any],
    ctx: JobContext,
    progress: Progress,
) -> Any:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    def conversational(rows: list[Any]) -> Any:
        return Dataset.from_list(
            [
                {
                    "prompt": [{"role": "user", "content": r["prompt"]}],
                    "chosen": [{"role": "assistant", "content": r["chosen"]}],
                    "rejected": [{"role": "assistant", "content": r["rejected"]}],
                    # trl hands these to apply_chat_template: special-token characters in the rows stay
                    # text, as in chat and in SFT (llmcore.encoding)
                    "chat_template_kwargs": {"sanitize_control_tokens": True},
                }
                for r in rows
            ]
        )

    progress.count_tokens_from_logs = True  # trl logs the tokens it trains on as "num_tokens"
    args = training_args(
        config,
        ctx,
        bool(eval_rows),
        cls=DPOConfig,
        count_tokens=False,  # DPO batches have no input_ids for the Trainer to count
        beta=config.dpo_beta,
        max_length=config.max_seq_len,
        gradient_checkpointing=False,
    )
    return DPOTrainer(
        model=model,
        args=args,
        train_dataset=conversational(train_rows),
        eval_dataset=conversational(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=[progress],  # type: ignore[list-item]  # a TrainerCallback: see progress_callback
    )


@functools.cache
def distill_trainer_class() -> type:
    """Built on first use: importing transformers is slow, and this module is imported by the web app."""
    import torch.nn.functional as F  # noqa: N812
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE, on the tokens that count."""

        def __init__(self, teacher: Any, temperature: float, alpha: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.teacher, self.temperature, self.alpha = teacher, temperature, alpha

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            with torch.no_grad():
                teacher_logits = self.teacher(
                    input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                ).logits
            vocab = min(outputs.logits.shape[-1], teacher_logits.shape[-1])  # embeddings may be padded
            student = outputs.logits[:, :-1, :vocab] / self.temperature  # (B, T-1, V)
            teacher = teacher_logits[:, :-1, :vocab] / self.temperature
            counts = inputs["labels"][:, 1:] != -100  # (B, T-1): positions that predict a counted token
            kl = F.kl_div(
                F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True, reduction="none"
            ).sum(-1)  # (B, T-1)
            kl = (kl * counts).sum() / counts.sum().clamp(min=1) * self.temperature**2
            loss = self.alpha * kl + (1 - self.alpha) * outputs.loss
            return (loss, outputs) if return_outputs else loss

    return DistillTrainer


# --- progress --------------------------------------------------------------------------------------
def progress_callback(ctx: JobContext, tokenizer: Any, config: FinetuneConfig) -> Progress:
    from transformers import TrainerCallback

    return type("ProgressCallback", (Progress, TrainerCallback), {})(ctx, tokenizer, config)


class Progress:
    """Reports every logged step to the job, generates samples, and stops (saving first) when cancelled.
    Mixed into a TrainerCallback by `progress_callback` (transformers is imported only when training)."""

    def __init__(self, ctx: JobContext, tokenizer: Any, config: FinetuneConfig) -> None:
        self.ctx, self.tokenizer, self.config = ctx, tokenizer, config
        self.tokens = 0
        self.count_tokens_from_logs = False
        self.cancelled = False
        self.started = time.perf_counter()
        self.start_tokens = 0

    def tokens_per_s(self) -> float:
        elapsed = time.perf_counter() - self.started
        return round((self.tokens - self.start_tokens) / elapsed, 1) if elapsed > 0 else 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.count_tokens_from_logs:  # a resumed job's state holds the tokens trained on so far
            self.tokens = int(state.num_input_tokens_seen)
        self.started, self.start_tokens = time.perf_counter(), self.tokens
        self.ctx.report(Update(step=state.global_step, total=state.max_steps, phase="training"))

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.count_tokens_from_logs and "num_tokens" in logs:
            self.tokens = int(logs["num_tokens"])
        elif "num_input_tokens_seen" in logs:
            self.tokens = int(logs["num_input_tokens_seen"])
        metrics = {"lr": float(logs["learning_rate"])} if "learning_rate" in logs else {}
        for key in ("loss", "eval_loss", "grad_norm", "rewards/accuracies", "rewards/margins"):
            if key in logs and isinstance(logs[key], int | float) and math.isfinite(logs[key]):
                metrics[key.replace("rewards/", "reward_")] = float(logs[key])
        if "loss" in metrics or "eval_loss" in metrics:
            metrics["tokens_per_s"] = self.tokens_per_s()
            self.ctx.report(
                Update(step=state.global_step, total=state.max_steps, phase="training", metrics=metrics)
            )

    def on_step_end(self, args, state, control, model=None, **kwargs):
        every = self.config.sample_every
        if every and self.config.sample_prompts and state.global_step % every == 0 and model is not None:
            for prompt in self.config.sample_prompts:
                output = generate_sample(model, self.tokenizer, prompt, self.config.sample_max_new_tokens)
                self.ctx.report(
                    Update(
                        step=state.global_step,
                        total=state.max_steps,
                        phase="training",
                        sample={"step": state.global_step, "prompt": prompt, "output": output},
                    )
                )
        if self.ctx.is_cancelled is not None and self.ctx.is_cancelled():
            self.cancelled = True
            control.should_save = True  # the Trainer saves a checkpoint at this step, then stops
            control.should_training_stop = True
        return control


@torch.no_grad()
def generate_sample(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 32) -> str:
    """Greedy answer to one user prompt through the chat template (the model is put back in train mode)."""
    was_training = model.training
    model.eval()
    try:
        return greedy_answer(model, tokenizer, prompt, max_new_tokens)
    finally:
        if was_training:
            model.train()
