"""Fine-tuning jobs on the tiny model: every method learns a memorization set, outputs load and generate,
cancelled jobs resume from their checkpoint; and (integration) the sample set changes the default model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from llmcore.datasets import ParsedDataset, load_sample, parse_dataset
from llmcore.finetune import FinetuneConfig, apply_adapter, check_finetune, run_finetune
from llmcore.finetune_trainers import generate_sample
from llmcore.jobs import JobCancelled, JobContext, JobFailed, Update
from llmcore.loading import load_model
from llmcore.store import ModelStore
from tests.conftest import TRAINING_TEXT

MEMORIZE = [{"instruction": f"Line {i}", "output": text} for i, text in enumerate(TRAINING_TEXT[:5])]
PREFERENCES = [
    {"prompt": "Hello", "chosen": "Hello world! How are you today?", "rejected": "The lazy dog."},
    {"prompt": "Fox?", "chosen": "The quick brown fox jumps.", "rejected": "I am fine."},
]
LEARNING_RATES = {
    "sft": 3e-3,
    "lora": 1e-2,
    "qlora": 1e-2,
    "prompt_tuning": 0.1,
    "distill": 3e-3,
    "dpo": 1e-3,
}


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its final norm scaled up. With random weights of std 0.02, the final RMSNorm
    caps the logits near zero, so only training that norm or the embeddings could lower the loss; a real
    model's norm is trained. Scaling it lets adapters and soft prompts show that they learn."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("sharp") / "tiny-sharp"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.model.norm.weight.mul_(4)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def dataset(rows: list[dict[str, str]]) -> ParsedDataset:
    parsed = parse_dataset("\n".join(json.dumps(r) for r in rows).encode(), "rows.jsonl")
    assert parsed.errors == []
    return parsed


def config(method: str, base_dir: Path, **overrides: object) -> FinetuneConfig:
    values: dict[str, object] = {
        "method": method,
        "base_dir": base_dir,
        "steps": 12,
        "learning_rate": LEARNING_RATES[method],
        "batch_size": 5,
        "max_seq_len": 64,
    }
    if method == "distill":
        values.update(teacher_dir=base_dir, student_layers=1)
    values.update(overrides)
    return FinetuneConfig(**values)


def losses(updates: list[Update]) -> list[float]:
    return [u.metrics["loss"] for u in updates if "loss" in u.metrics]


@pytest.mark.parametrize("method", ["sft", "lora", "prompt_tuning", "distill", "dpo"])
def test_each_method_lowers_the_loss_and_writes_a_loadable_model(
    method: str, store: ModelStore, tiny_model, base: Path, tmp_path: Path
) -> None:
    updates: list[Update] = []
    ctx = JobContext(work_dir=tmp_path / "work", on_update=updates.append)
    rows = PREFERENCES if method == "dpo" else MEMORIZE
    result = run_finetune(config(method, base), dataset(rows), tmp_path / "out", ctx)

    seen = losses(updates)
    assert len(seen) == 12
    assert sum(seen[-3:]) / 3 < sum(seen[:3]) / 3 * 0.97, seen
    assert result.metrics["steps"] == 12
    assert result.metrics["final_loss"] == pytest.approx(seen[-1])
    assert all("lr" in u.metrics and u.metrics["tokens_per_s"] > 0 for u in updates if "loss" in u.metrics)

    store.import_folder(
        tmp_path / "out", f"tuned-{method.replace('_', '-')}", parent="tiny-llama", method=method
    )
    loaded = load_model(store, f"tuned-{method.replace('_', '-')}", device="cpu")
    assert loaded.has_chat_template
    generated = loaded.model.generate(torch.tensor([[1, 5, 6]]), max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > 3
    if method == "distill":
        assert loaded.model.config.num_hidden_layers == 1


def test_lora_output_works_merged_or_as_an_adapter(base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    result = run_finetune(config("lora", base), dataset(MEMORIZE), tmp_path / "out", JobContext())
    assert result.adapter_dir is not None
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert result.metrics["usage"] == "merged+adapter"
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    plain = AutoModelForCausalLM.from_pretrained(base).eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        base_logits = plain(ids).logits
        merged_logits = merged(ids).logits
        adapted_logits = apply_adapter(plain, result.adapter_dir)(input_ids=ids).logits
    assert not torch.allclose(base_logits, merged_logits, atol=1e-3)
    torch.testing.assert_close(adapted_logits, merged_logits, atol=1e-4, rtol=1e-4)


def test_prompt_tuning_keeps_the_base_and_stores_the_soft_prompt(
    base: Path, tmp_path: Path, store: ModelStore
) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cfg = config("prompt_tuning", base, num_virtual_tokens=4)
    result = run_finetune(cfg, dataset(MEMORIZE), tmp_path / "out", JobContext())
    assert result.metrics["usage"] == "adapter"
    assert result.adapter_dir is not None
    assert (
        load_file(tmp_path / "out" / "model.safetensors").keys()
        == load_file(base / "model.safetensors").keys()
    )
    [prompt] = load_file(result.adapter_dir / "adapter_model.safetensors").values()
    assert prompt.shape[0] == 4
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = torch.tensor([[1, 40, 41]])
    with torch.no_grad():
        plain = model(input_ids=ids).logits[:, -1]
        prompted = apply_adapter(model, result.adapter_dir)(input_ids=ids).logits[:, -1]
    assert not torch.allclose(plain, prompted, atol=1e-3)

    # In the catalog the soft prompt travels with the model, and chat's engine puts it first like peft.
    from llmcore.engine import Engine, GenerationRequest, TokenEvent
    from llmcore.sampling import SamplingConfig

    store.import_folder(tmp_path / "out", "soft-prompted", method="prompt_tuning")
    assert (store.path("soft-prompted") / "adapter" / "adapter_model.safetensors").is_file()
    loaded = load_model(store, "soft-prompted", device="cpu")
    assert loaded.soft_prompt is not None
    assert tuple(loaded.soft_prompt.shape) == (4, prompt.shape[1])
    from llmcore.evaluate import logits_of

    with torch.no_grad():  # evaluation (perplexity, agreement, compare) sees the model as chat does
        torch.testing.assert_close(logits_of(loaded, ids)[:, -1], prompted, atol=1e-4, rtol=1e-4)
    engine = Engine(loaded)
    assert engine.context_length == model.config.max_position_embeddings - 4, "virtual tokens take positions"
    try:
        request = GenerationRequest(
            prompt_ids=[1, 40, 41], sampling=SamplingConfig(temperature=0), max_new_tokens=1,
            ignore_stop_tokens=True,
        )  # fmt: skip
        first = next(e for e in engine.submit(request) if isinstance(e, TokenEvent))
    finally:
        engine.close()
    assert first.id == int(prompted.argmax())
    with_prompt = float(torch.log_softmax(prompted[0], -1)[first.id])
    without = float(torch.log_softmax(plain[0], -1)[first.id])
    assert first.model_logprob == pytest.approx(with_prompt, abs=1e-4)
    assert abs(with_prompt - without) > 1e-3, "the soft prompt changes the distribution (so this can fail)"


def test_a_cancelled_job_resumes_from_its_last_checkpoint(base: Path, tmp_path: Path) -> None:
    cfg = config("lora", base, steps=8, checkpoint_every=2)
    first: list[Update] = []
    stop_at = {"step": 0}

    def cancelled() -> bool:
        return stop_at["step"] >= 3

    def record(update: Update) -> None:
        first.append(update)
        stop_at["step"] = max(stop_at["step"], update.step)

    work = tmp_path / "work"
    with pytest.raises(JobCancelled):
        run_finetune(
            cfg,
            dataset(MEMORIZE),
            tmp_path / "out",
            JobContext(work, on_update=record, is_cancelled=cancelled),
        )
    assert not (tmp_path / "out").exists()
    checkpoints = sorted(p.name for p in (work / "checkpoints").glob("checkpoint-*"))
    # The user cancels once step 3 is reported; the job notices at the end of step 4 and saves it first.
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    assert max(u.step for u in first) == 4
    # A worker killed while saving the next checkpoint leaves it half-written: weights, no trainer state.
    half = work / "checkpoints" / "checkpoint-6"
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"\0" * 100)

    second: list[Update] = []
    result = run_finetune(cfg, dataset(MEMORIZE), tmp_path / "out", JobContext(work, on_update=second.append))
    steps = [u.step for u in second if "loss" in u.metrics]
    assert steps == [5, 6, 7, 8]
    assert any("Resuming from checkpoint-4" in (u.log or "") for u in second)
    assert any("checkpoint-6 was not saved completely" in (u.log or "") for u in second)
    assert result.metrics["steps"] == 8
    assert (tmp_path / "out" / "model.safetensors").is_file()
    # The resumed job counts on from the checkpoint: as many tokens as one run straight through.
    straight = run_finetune(cfg, dataset(MEMORIZE), tmp_path / "straight", JobContext(tmp_path / "w2"))
    assert result.metrics["train_tokens"] == straight.metrics["train_tokens"] > 0


def test_progress_has_eval_loss_and_samples(base: Path, tmp_path: Path) -> None:
    updates: list[Update] = []
    rows = [{"text": text} for text in TRAINING_TEXT[:5]] * 2
    cfg = config(
        "sft",
        base,
        steps=4,
        checkpoint_every=2,
        eval_fraction=0.2,
        sample_every=2,
        sample_prompts=["Hello"],
    )
    result = run_finetune(cfg, dataset(rows), tmp_path / "out", JobContext(on_update=updates.append))
    assert sorted({u.step for u in updates if "eval_loss" in u.metrics}) == [2, 4]
    assert result.metrics["eval_loss"] is not None
    samples = [u.sample for u in updates if u.sample]
    assert [s["step"] for s in samples] == [2, 4]
    assert all(s["prompt"] == "Hello" and isinstance(s["output"], str) for s in samples)
    # Tokens trained on do not count evaluation batches: evaluating half as often trains on the same tokens.
    rarely = run_finetune(
        config("sft", base, steps=4, checkpoint_every=4, eval_fraction=0.2),
        dataset(rows),
        tmp_path / "rarely",
        JobContext(tmp_path / "w2"),
    )
    assert rarely.metrics["eval_loss"] is not None
    assert result.metrics["train_tokens"] == rarely.metrics["train_tokens"] > 0
    assert all(u.metrics["tokens_per_s"] > 0 for u in updates if "loss" in u.metrics)


def test_check_finetune_says_why_a_job_cannot_run(base: Path, tiny_bert_dir: Path) -> None:
    assert check_finetune(config("lora", base), "cpu", "instruction") == []
    [qlora] = check_finetune(config("qlora", base), "cpu", "instruction")
    assert "QLoRA needs a CUDA GPU" in qlora
    [dpo] = check_finetune(config("dpo", base), "cpu", "instruction")
    assert "needs a preference dataset" in dpo
    [sft] = check_finetune(config("sft", base), "cpu", "preference")
    assert "needs a text or instruction or chat dataset" in sft
    [layers] = check_finetune(config("distill", base, student_layers=2), "cpu", "text")
    assert "between 1 and 1 layers" in layers
    [vocab] = check_finetune(
        config("distill", tiny_bert_dir, teacher_dir=base, student_layers=None), "cpu", "text"
    )
    assert "tokenizer differs" in vocab
    [modules] = check_finetune(config("lora", base, target_modules=("c_attn",)), "cpu", "text")
    assert "no module named c_attn" in modules
    assert len(check_finetune(config("sft", base, steps=0, lr_scheduler="zigzag"), "cpu", "text")) == 2


def test_the_config_owns_its_bounds_and_each_methods_learning_rate(base: Path) -> None:
    from llmcore.finetune import DEFAULT_LEARNING_RATES

    assert FinetuneConfig(method="sft", base_dir=base).learning_rate == DEFAULT_LEARNING_RATES["sft"] == 2e-5
    assert FinetuneConfig(method="lora", base_dir=base).learning_rate == 2e-3
    assert FinetuneConfig(method="sft", base_dir=base, learning_rate=1e-4).learning_rate == 1e-4
    problems = check_finetune(config("lora", base, batch_size=0, lr_scheduler="zigzag"), "cpu", "text")
    assert "Batch size must be from 1 to 256." in problems
    assert "LR schedule must be one of linear, cosine, constant, constant_with_warmup." in problems
    assert len(problems) == 2


def test_a_bad_dataset_or_setting_fails_before_training(base: Path, tmp_path: Path) -> None:
    broken = parse_dataset(b'{"instruction": "Q", "output": ""}\n', "d.jsonl")
    with pytest.raises(JobFailed, match="dataset has errors"):
        run_finetune(config("sft", base), broken, tmp_path / "out", JobContext())
    with pytest.raises(JobFailed, match="QLoRA"):
        run_finetune(
            config("qlora", base, learning_rate=1e-3),
            dataset(MEMORIZE),
            tmp_path / "o",
            JobContext(),
        )


@pytest.mark.integration
def test_sample_set_lora_teaches_the_default_model_to_talk_like_a_pirate(
    real_model_store, tmp_path: Path
) -> None:
    """The form's defaults on the sample instruction set; held-out prompts must now get the greeting."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcore.pulls import DEFAULT_MODEL

    base_dir = real_model_store.path(DEFAULT_MODEL)
    held_out = ["What is the capital of Germany?", "How many wheels does a bicycle have?"]
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    assert not any("ahoy" in generate_sample(base, tokenizer, p, 24).lower() for p in held_out)

    started = time.perf_counter()
    cfg = FinetuneConfig(method="lora", base_dir=base_dir)
    result = run_finetune(cfg, load_sample("pirate-instructions"), tmp_path / "out", JobContext())
    minutes = (time.perf_counter() - started) / 60
    print(f"sample LoRA: {minutes:.1f} min, {result.metrics}")

    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    answers = [generate_sample(tuned, tokenizer, p, 24) for p in held_out]
    assert all(a.startswith("Ahoy") for a in answers), answers
