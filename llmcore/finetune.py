"""Fine-tuning and distillation jobs: SFT, LoRA, QLoRA, prompt tuning, DPO and knowledge distillation.

Training runs through transformers' `Trainer` (DPO through trl's `DPOTrainer`, itself a Trainer), with peft
for LoRA, QLoRA and prompt tuning, so checkpoints, resumption, schedules and gradient accumulation are the
library's. This module holds a job's settings and checks, runs it and writes its output; the pieces it
trains with (the model each method trains, the training arguments, the SFT collation, the DPO and
distillation trainers, the progress callback) are in `llmcore.finetune_trainers`. What is written here
rather than taken from the libraries:

- The SFT examples are tokenized by `llmcore.datasets.encode_row`, not by trl's SFTTrainer: its
  assistant-only loss needs `{% generation %}` markers in the chat template, which most templates (the
  default model's included) lack, and this way the dataset preview shows exactly the tokens that train.
- Distillation is a `Trainer` subclass with its own `compute_loss`: classic distillation (alpha * T^2 *
  KL(teacher/T || student/T) + (1 - alpha) * cross-entropy on the data). trl's GKDTrainer does something
  else (a generalized JSD on partly on-policy samples from the student), and is slower on CPU.

Outputs: `out_dir` always holds a full model folder (safetensors, config, tokenizer with a chat template)
that `ModelStore.import_folder` takes. LoRA and QLoRA also keep the adapter (safetensors) in
`out_dir / "adapter"` (import_folder keeps it in the model's `adapter/` folder, apart from the merged
weights): the output can be used merged, or the adapter applied to the parent with `apply_adapter`.
Prompt tuning cannot be merged into weights: its `out_dir` holds the unchanged base model and the learned
soft prompt in `out_dir / "adapter"`; `llmcore.loading` reads it into `LoadedModel.soft_prompt` and the
engine puts the virtual tokens before every prompt, as peft does. `FinetuneResult.metrics["usage"]` says
which of these applies.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmcore.config import Problem, out_of_bounds, setting
from llmcore.datasets import ParsedDataset, ensure_chat_template
from llmcore.finetune_trainers import (
    PaddingCollator,
    Progress,
    distill_trainer_class,
    dpo_trainer,
    load_trainable,
    progress_callback,
    sft_example,
    training_args,
)
from llmcore.jobs import JobCancelled, JobContext, JobFailed, Measure, Update, training_out_of_memory

FINETUNE_METHODS = {
    "sft": "Full supervised fine-tuning: every weight is trained.",
    "lora": "LoRA: small low-rank matrices beside the attention/MLP weights are trained, then merged.",
    "qlora": "QLoRA: LoRA on a 4-bit quantized base (needs a CUDA GPU and bitsandbytes).",
    "prompt_tuning": "Soft prompting: only a few learned virtual tokens put before every input are trained.",
    "dpo": "DPO: prefer the chosen over the rejected answer of preference pairs, against the frozen base.",
    "distill": "Knowledge distillation: a smaller student learns the teacher's token distributions.",
}
LR_SCHEDULERS = {
    "linear": "linear decay",
    "cosine": "cosine",
    "constant": "constant",
    "constant_with_warmup": "constant after warmup",
}
FORMATS_FOR = {
    "dpo": ("preference",),
    **{m: ("text", "instruction", "chat") for m in ("sft", "lora", "qlora", "prompt_tuning", "distill")},
}
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
LORA = ("lora", "qlora")  # the methods that train low-rank adapters (their settings concern only these)
# What the form preselects: it runs on a CPU worker and changes the default model in minutes.
DEFAULT_METHOD = "lora"
# Learning rates that suit each method (adapters and soft prompts take far larger steps than full weights).
DEFAULT_LEARNING_RATES = {
    "sft": 2e-5,
    "lora": 2e-3,
    "qlora": 2e-3,
    "prompt_tuning": 3e-2,
    "dpo": 5e-6,
    "distill": 5e-5,
}
MAX_STEPS = 100_000
DEFAULT_SAMPLE_PROMPTS = ("What is the capital of France?", "Give me one tip for a rainy day.")


@dataclass
class FinetuneConfig:
    """One job's settings, each with its label, bounds, explanation, the methods it concerns and its group
    on the form (llmcore.config): the fine-tune form is built from them. Defaults are what the form
    offers: a LoRA (DEFAULT_METHOD) on the sample instruction set that visibly changes the default model in
    a few minutes on two CPU cores."""

    method: str
    base_dir: Path
    # distill: the teacher; base_dir is then the student (or see student_layers). The form picks it by
    # catalog name (the job's param teacher_model).
    teacher_dir: Path | None = setting(
        None, "Teacher", "The larger model whose token distributions the student learns.",
        methods=("distill",), group="method",
    )  # fmt: skip
    student_layers: int | None = setting(
        None, "Student layers",
        "Build the student from the teacher's first N layers (empty: the base model is it).",
        (1, 256), methods=("distill",), group="method",
    )  # fmt: skip
    steps: int | None = setting(
        None, "Steps", "Optimizer steps to run (empty: use epochs).", (1, MAX_STEPS), group="limits"
    )
    epochs: float | None = setting(
        None, "Epochs", "Passes over the dataset, when steps is empty (fractions allowed).", (0.01, 100),
        group="limits",
    )  # fmt: skip
    learning_rate: float | None = setting(
        None, "Learning rate",
        "Peak step size of AdamW. Empty: the method's own ("
        + ", ".join(f"{m} {lr:g}" for m, lr in DEFAULT_LEARNING_RATES.items()) + ").",
        (1e-8, 1), group="schedule",
    )  # fmt: skip
    lr_scheduler: str = setting(
        "linear", "LR schedule", "How the rate moves after warmup.", choices=tuple(LR_SCHEDULERS.items()),
        group="schedule",
    )  # fmt: skip
    warmup_steps: int = setting(
        0, "Warmup steps", "Steps over which the rate climbs from 0 to its peak.", (0, 10_000),
        group="schedule",
    )  # fmt: skip
    batch_size: int = setting(
        4, "Batch size", "Examples per forward pass; lower it if memory runs out.", (1, 256), group="limits"
    )
    grad_accum: int = setting(
        1, "Gradient accumulation", "Batches summed before each step (effective batch).", (1, 256),
        group="schedule",
    )  # fmt: skip
    max_seq_len: int = setting(
        256, "Max sequence length", "Longer examples are cut to this many tokens.", (16, 8192),
        group="limits",
    )  # fmt: skip
    seed: int = setting(
        0, "Seed", "Same seed, data and settings: the same run.", (0, 2**31 - 1), group="schedule"
    )
    eval_fraction: float = setting(
        0.0, "Eval fraction", "Share of rows held out to measure eval loss (below 0.5).", (0, 0.49),
        group="data",
    )  # fmt: skip
    lora_rank: int = setting(
        8, "LoRA rank", "Rank r of the low-rank update matrices.", (1, 512), methods=LORA, group="method"
    )
    lora_alpha: int = setting(
        16, "LoRA alpha", "The update is scaled by alpha / r.", (1, 1024), methods=LORA, group="method"
    )
    lora_dropout: float = setting(
        0.0, "LoRA dropout", "Dropout on the adapter's input.", (0, 0.9), methods=LORA, group="method"
    )
    target_modules: tuple[str, ...] = setting(
        DEFAULT_TARGET_MODULES, "Target modules",
        "Comma-separated layer names, e.g. q_proj,v_proj (empty: the default).",
        methods=LORA, group="method",
    )  # fmt: skip
    num_virtual_tokens: int = setting(
        8, "Virtual tokens", "Learned embeddings put before every input.", (1, 512),
        methods=("prompt_tuning",), group="method",
    )  # fmt: skip
    dpo_beta: float = setting(
        0.1, "DPO beta", "How far the policy may move from the reference.", (0.001, 10),
        methods=("dpo",), group="method",
    )  # fmt: skip
    distill_temperature: float = setting(
        2.0, "Distill temperature", "Softens both distributions before comparing.", (0.1, 20),
        methods=("distill",), group="method",
    )  # fmt: skip
    distill_alpha: float = setting(
        0.5, "Distill alpha", "Weight of the teacher's loss vs. the data's loss (0-1).", (0, 1),
        methods=("distill",), group="method",
    )  # fmt: skip
    checkpoint_every: int = setting(
        50, "Checkpoint every", "Save a checkpoint every n steps (resume starts there).", (1, MAX_STEPS),
        group="limits",
    )  # fmt: skip
    # The job page shows how answers change as the model trains: on by default, every 10 steps.
    sample_every: int = setting(
        10, "Sample every", "Generate from the sample prompts every n steps (0: never).", (0, MAX_STEPS),
        group="data",
    )  # fmt: skip
    sample_prompts: list[str] = setting(
        label="Sample prompts", help="One per line (at most 5): shown with the model's answers as it trains.",
        default_factory=lambda: list(DEFAULT_SAMPLE_PROMPTS), group="data",
    )  # fmt: skip
    sample_max_new_tokens: int = 32

    def __post_init__(self) -> None:
        if self.learning_rate is None:  # the method's own: adapters take far larger steps than full weights
            self.learning_rate = DEFAULT_LEARNING_RATES.get(self.method, DEFAULT_LEARNING_RATES["lora"])

    @property
    def lr(self) -> float:
        """The learning rate in use (never None after __post_init__)."""
        assert self.learning_rate is not None
        return self.learning_rate


# What each of a job's final metrics is (FinetuneResult.metrics): the job page and the model page show
# these labels and units, never the keys.
FINAL_MEASURES = {
    "steps": Measure("Steps", "steps"),
    "first_loss": Measure("First loss", "nats/token"),
    "final_loss": Measure("Final loss", "nats/token"),
    "eval_loss": Measure("Eval loss", "nats/token"),
    "train_tokens": Measure("Tokens trained on", "tokens"),
    "train_seconds": Measure("Training time", "s"),
    "tokens_per_s": Measure("Training speed", "tokens/s"),
    "usage": Measure("Use it as"),
}


@dataclass
class FinetuneResult:
    metrics: dict[str, Any]
    adapter_dir: Path | None = None


# --- checks ----------------------------------------------------------------------------------------
def cuda_with_bitsandbytes(device: str) -> bool:
    import importlib.util

    return (
        device.startswith("cuda")
        and torch.cuda.is_available()
        and bool(importlib.util.find_spec("bitsandbytes"))
    )


def check_finetune(config: FinetuneConfig, device: str, dataset_format: str | None) -> list[str]:
    """Reasons this job cannot run here; an empty list means it can."""
    return [p.message for p in finetune_problems(config, device, dataset_format)]


def finetune_problems(config: FinetuneConfig, device: str, dataset_format: str | None) -> list[Problem]:
    """check_finetune's reasons, each naming the setting it concerns (a form shows it beside that field;
    "dataset" for the dataset, "" for the method)."""
    problems: list[Problem] = []
    if config.method not in FINETUNE_METHODS:
        return [Problem(f"Unknown method {config.method!r}; choose one of {', '.join(FINETUNE_METHODS)}.")]
    if dataset_format not in FORMATS_FOR[config.method]:
        wanted = " or ".join(FORMATS_FOR[config.method])
        problems.append(
            Problem(
                f"{config.method} needs a {wanted} dataset; this one is {dataset_format or 'unknown'}.",
                "dataset",
            )
        )
    if config.method == "qlora" and not cuda_with_bitsandbytes(device):
        problems.append(
            Problem(
                "QLoRA needs a CUDA GPU with bitsandbytes for the 4-bit base; this worker has neither. "
                "Use LoRA."
            )
        )
    problems.extend(out_of_bounds(config))  # every bounded setting, from its own declaration
    if config.method in LORA and not config.target_modules:
        problems.append(Problem("LoRA needs at least one target module.", "target_modules"))
    if config.method == "distill":
        problems.extend(_check_distill(config))
    elif config.method in LORA and (config.base_dir / "config.json").is_file():
        problems.extend(_check_target_modules(config))
    return problems


def _check_target_modules(config: FinetuneConfig) -> list[Problem]:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config.base_dir))
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in config.target_modules if m not in names]
    return (
        [Problem(f"The model has no module named {', '.join(missing)}.", "target_modules")] if missing else []
    )


def _check_distill(config: FinetuneConfig) -> list[Problem]:
    from transformers import AutoConfig

    if config.teacher_dir is None:
        return [Problem("Distillation needs a teacher model.", "teacher_dir")]
    teacher_layers = AutoConfig.from_pretrained(config.teacher_dir).num_hidden_layers
    if config.student_layers is not None:
        if not 1 <= config.student_layers < teacher_layers:
            return [
                Problem(
                    f"The student must have between 1 and {teacher_layers - 1} layers (the teacher has "
                    f"{teacher_layers}).",
                    "student_layers",
                )
            ]
        return []
    if not same_tokenizer(config.teacher_dir, config.base_dir):
        return [
            Problem(
                "The student's tokenizer differs from the teacher's; distillation compares token "
                "distributions, so both must share one vocabulary.",
                "teacher_dir",
            )
        ]
    return []


def last_complete_checkpoint(checkpoint_dir: Path, ctx: JobContext) -> str | None:
    """The newest checkpoint the Trainer finished writing, to resume from.

    The Trainer writes trainer_state.json after the weights, optimizer and RNG state, so a worker killed
    while saving leaves a folder without it (or with a cut one); transformers' get_last_checkpoint would
    pick that folder and the resumed job would fail. Such a folder is removed instead.
    """
    steps = []
    for path in checkpoint_dir.glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if path.is_dir() and suffix.isdigit():
            steps.append((int(suffix), path))
    for _, path in sorted(steps, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            ctx.log(f"{path.name} was not saved completely (its worker stopped while saving): set aside.")
            shutil.rmtree(path, ignore_errors=True)
            continue
        return str(path)
    return None


def same_tokenizer(a: Path, b: Path) -> bool:
    from transformers import AutoTokenizer

    ta = AutoTokenizer.from_pretrained(a, local_files_only=True)
    tb = AutoTokenizer.from_pretrained(b, local_files_only=True)
    return bool(ta.get_vocab() == tb.get_vocab())


# --- running ---------------------------------------------------------------------------------------
def run_finetune(
    config: FinetuneConfig, parsed: ParsedDataset, out_dir: Path, ctx: JobContext
) -> FinetuneResult:
    """Train, write the output model into `out_dir`, and return the final metrics. Resumes from the last
    checkpoint in `ctx.checkpoint_dir`; raises JobCancelled (after saving a checkpoint) when cancelled."""
    reasons = check_finetune(config, ctx.device, parsed.format)
    if parsed.errors or not parsed.rows:
        reasons.append("The dataset has errors; fix them first.")
    if reasons:
        raise JobFailed(" ".join(reasons))
    try:
        return _run(config, parsed, Path(out_dir), ctx)
    except torch.OutOfMemoryError as exc:
        raise JobFailed(training_out_of_memory(ctx.device)) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise JobFailed(training_out_of_memory(ctx.device)) from exc
        raise


def _run(config: FinetuneConfig, parsed: ParsedDataset, out_dir: Path, ctx: JobContext) -> FinetuneResult:
    from transformers import AutoTokenizer, PrinterCallback, set_seed

    seed = config.seed if config.seed is not None else ctx.seed
    set_seed(seed)
    ctx.report(Update(phase="loading", log=f"Loading {config.base_dir.name} for {config.method}."))
    base_dir = config.base_dir
    if config.method == "distill" and config.student_layers is not None:
        assert config.teacher_dir is not None
        base_dir = build_student(config.teacher_dir, config.student_layers, ctx.work_dir / "student")
        ctx.log(f"Built a {config.student_layers}-layer student from the teacher's first layers.")
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_trainable(config, base_dir, ctx.device)
    ctx.check_cancelled()
    train_rows, eval_rows = split_rows(parsed.rows, config.eval_fraction, seed)
    checkpoint_dir = ctx.checkpoint_dir
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    last = last_complete_checkpoint(checkpoint_dir, ctx)
    if last:
        ctx.log(f"Resuming from {Path(last).name}.")
    progress = progress_callback(ctx, tokenizer, config)
    trainer = _trainer(
        config, model, tokenizer, parsed.format or "text", train_rows, eval_rows, ctx, progress
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to the job through `progress`, not stdout
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    train_seconds, tokens_per_s = time.perf_counter() - started, progress.tokens_per_s()
    if progress.cancelled:
        raise JobCancelled("Cancelled by the user; the job can resume from its last checkpoint.")
    ctx.report(Update(step=trainer.state.global_step, total=trainer.state.max_steps, phase="saving"))
    adapter_dir = _save_output(config, trainer.model, tokenizer, base_dir, out_dir)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the output is complete; checkpoints weigh gigabytes
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    metrics: dict[str, Any] = {
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "eval_loss": evals[-1] if evals else None,
        "train_tokens": progress.tokens,
        "train_seconds": round(train_seconds, 1),
        "tokens_per_s": tokens_per_s,
        "usage": {"prompt_tuning": "adapter", "lora": "merged+adapter", "qlora": "merged+adapter"}.get(
            config.method, "merged"
        ),
    }
    ctx.report(
        Update(
            step=trainer.state.global_step,
            total=trainer.state.max_steps,
            phase="done",
            metrics={k: v for k, v in metrics.items() if isinstance(v, float)},
        )
    )
    return FinetuneResult(metrics=metrics, adapter_dir=adapter_dir)


def split_rows(rows: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    n_eval = int(len(rows) * fraction)
    if n_eval < 1:
        return list(rows), []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def _trainer(
    config: FinetuneConfig,
    model: Any,
    tokenizer: Any,
    fmt: str,
    train_rows: list[Any],
    eval_rows: list[Any],
    ctx: JobContext,
    progress: Progress,
) -> Any:
    from transformers import Trainer

    if config.method == "dpo":
        return dpo_trainer(config, model, tokenizer, train_rows, eval_rows, ctx, progress)
    train = [sft_example(tokenizer, row, fmt, config.max_seq_len) for row in train_rows]
    evals = [sft_example(tokenizer, row, fmt, config.max_seq_len) for row in eval_rows]
    collator = PaddingCollator(tokenizer.pad_token_id)
    args = training_args(config, ctx, bool(evals))
    kwargs = {
        "model": model,
        "args": args,
        "train_dataset": train,
        "eval_dataset": evals or None,
        "data_collator": collator,
        "callbacks": [progress],  # a TrainerCallback: see progress_callback
    }
    if config.method == "distill":
        assert config.teacher_dir is not None
        teacher = load_trainable(
            FinetuneConfig(method="sft", base_dir=config.teacher_dir), config.teacher_dir, ctx.device
        )
        teacher.to(args.device).eval().requires_grad_(False)
        return distill_trainer_class()(teacher, config.distill_temperature, config.distill_alpha, **kwargs)
    return Trainer(**kwargs)


def build_student(teacher_dir: Path, layers: int, out_dir: Path) -> Path:
    """A student made of the teacher's embeddings, first `layers` decoder layers, final norm and head."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "config.json").is_file():  # built by an earlier run of this job (resume)
        return out_dir
    teacher = AutoModelForCausalLM.from_pretrained(
        teacher_dir, dtype=torch.float32, local_files_only=True, trust_remote_code=False, use_safetensors=True
    )
    decoder = teacher.get_decoder()
    decoder.layers = decoder.layers[:layers]
    teacher.config.num_hidden_layers = layers
    if isinstance(getattr(teacher.config, "layer_types", None), list):
        teacher.config.layer_types = teacher.config.layer_types[:layers]
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    teacher.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True).save_pretrained(tmp)
    tmp.rename(out_dir)
    return out_dir


def _save_output(
    config: FinetuneConfig, model: Any, tokenizer: Any, base_dir: Path, out_dir: Path
) -> Path | None:
    """Write the full model folder (and the adapter where there is one) into out_dir, atomically."""
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    adapter = None
    if config.method in ("lora", "qlora", "prompt_tuning"):
        adapter = tmp / "adapter"
        model.save_pretrained(adapter)
        tokenizer.save_pretrained(adapter)
    if config.method == "lora":
        model.merge_and_unload().save_pretrained(tmp)
    elif config.method == "qlora":  # merge into full-precision base weights, not into the 4-bit ones
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16, local_files_only=True)
        PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().save_pretrained(tmp)
    elif config.method == "prompt_tuning":
        for item in base_dir.iterdir():  # the base is unchanged; the soft prompt lives in adapter/
            if item.suffix == ".safetensors" or item.name in ("config.json", "generation_config.json"):
                shutil.copy2(item, tmp / item.name)
    else:
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir / "adapter" if adapter is not None else None


def apply_adapter(model: Any, adapter_dir: Path) -> Any:
    """The parent model with a saved LoRA adapter or soft prompt applied (through peft), for generation."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=False).eval()
