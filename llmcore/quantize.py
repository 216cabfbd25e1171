"""Quantize a model folder into a smaller one, and measure what that cost (the verify report).

Additions to the shared jobs contract: `QuantizeResult.extra` (a dict for the catalog meta: dtype, variant,
group_size, gguf_file, gguf_roundtrip, requires_device="cuda" for the GPU int4 variant); `verify` also
takes `max_tokens` (perplexity) and `new_tokens` (speed) and its report is documented on the function.

Methods (QUANT_METHODS):
- int8_weight, int8_dynamic, int4_weight: torchao tensor subclasses on every Linear of the decoder layers
  (the embedding and output head stay as they are, as transformers' own torchao integration does). They
  are saved with transformers' torchao integration, which writes plain safetensors (the quantized data and
  scales as tensors, torchao's JSON description in the header) and reads them back through
  `from_pretrained(use_safetensors=True)`: no pickle, no custom code. int4_weight has two variants: on CUDA
  torchao's tinygemm kernel (Int4WeightOnlyConfig, tile-packed; such a model then loads on CUDA only), on
  CPU torchao's IntxWeightOnlyConfig with int4 values and per-group scales (stored one value per byte, so
  it is no smaller than int8 on disk; the accuracy is int4's).
- bf16, fp16: a cast of every floating-point weight; the simple baseline.
- gguf_q8_0: a llama.cpp GGUF file with Q8_0 weights, written with gguf-py (llama.cpp's own Python
  package) for Llama-architecture models. The catalog model is those Q8_0 weights read back by
  transformers' GGUF reader and saved as safetensors, so chat behaves like the GGUF; the .gguf file stays
  in the model folder for download.

`run_quantize` writes into `out_dir` only and removes what it wrote when it fails or is cancelled; the caller
imports `out_dir` into the store atomically. `verify` loads parent and child side by side and measures them
on the same prompts and text.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmcore.config import Problem, setting
from llmcore.jobs import JobCancelled, JobContext, JobFailed, Measure, Update, change

QUANT_METHODS = {
    "int8_weight": "int8 weight-only (torchao): weights stored as int8 with one scale per row; "
    "activations stay in floating point.",
    "int8_dynamic": "int8 dynamic activations with int8 weights (torchao): activations are quantized "
    "on the fly for int8 matrix products.",
    "int4_weight": "int4 weight-only with a group size (torchao): one scale per group of weights "
    "(default 32); the GPU variant packs two values per byte.",
    "bf16": "bfloat16 cast: half the bytes of float32, same range, fewer mantissa bits.",
    "fp16": "float16 cast: half the bytes of float32, more mantissa bits than bf16, smaller range.",
    "gguf_q8_0": "GGUF Q8_0 export for llama.cpp-based tools (8-bit blocks of 32 with one scale each); "
    "Llama-architecture models.",
}
TORCHAO_METHODS = {"int8_weight", "int8_dynamic", "int4_weight"}
DEFAULT_GROUP_SIZE = 32
GROUP_SIZES = (32, 64, 128, 256)
GGUF_ARCHITECTURES = {"LlamaForCausalLM": "llama"}  # what the GGUF writer below knows how to map
GGUF_FILE = "model-q8_0.gguf"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


@dataclass
class QuantizeConfig:
    """A quantize job's settings; the quantize form is built from their Settings (llmcore.config)."""

    method: str
    group_size: int | None = setting(
        None, "Group size",
        f"Weights per scale: must divide every layer width. Empty: {DEFAULT_GROUP_SIZE}.",
        (8, 4096), methods=("int4_weight",), group="method",
    )  # fmt: skip


@dataclass
class QuantizeResult:
    files: list[str]  # file names written into out_dir
    notes: list[str] = field(default_factory=list)  # facts for the user (variant, what stays unquantized)
    extra: dict[str, Any] = field(default_factory=dict)  # for the catalog meta: method, group size, ...


# --- checks -------------------------------------------------------------------------------------------
def _read_config(source_dir: Path) -> dict[str, Any]:
    path = Path(source_dir) / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def _linear_in_features(source_dir: Path) -> dict[str, int]:
    """Input width of every 2-D weight of the decoder layers, from the safetensors headers (no tensors)."""
    from safetensors import safe_open

    widths: dict[str, int] = {}
    for path in sorted(Path(source_dir).glob("*.safetensors")):
        with safe_open(path, framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                shape = fh.get_slice(key).get_shape()
                if ".layers." in key and key.endswith(".weight") and len(shape) == 2:
                    widths[key] = int(shape[1])
    return widths


def check_quantize(config: QuantizeConfig, source_dir: Path, device: str) -> list[str]:
    """Reasons this quantization cannot run on `device` (empty: it can). Reads headers only: instant."""
    return [p.message for p in quantize_problems(config, source_dir, device)]


def quantize_problems(config: QuantizeConfig, source_dir: Path, device: str) -> list[Problem]:
    """check_quantize's reasons, each naming the setting it concerns ("" for the method or the model)."""
    method = config.method
    if method not in QUANT_METHODS:
        return [Problem(f"Unknown quantization method {method!r}; choose one of {', '.join(QUANT_METHODS)}.")]
    reasons: list[str] = []
    group_reasons: list[str] = []  # those of the group size
    device_type = torch.device(device).type
    model_config = _read_config(source_dir)
    if not model_config or not any(Path(source_dir).glob("*.safetensors")):
        return [Problem("The source model folder has no config.json or no safetensors weights.")]
    quantized = model_config.get("quantization_config")
    if quantized:
        kind = quantized.get("quant_method", "unknown")
        if isinstance(quantized.get("quant_type"), dict):
            kind += " " + ", ".join(v.get("_type", "?") for v in quantized["quant_type"].values())
        reasons.append(
            f"The source is already quantized ({kind}); quantizing it again would stack the errors of both "
            "methods and torchao cannot re-quantize quantized weights. Quantize its parent instead."
        )
    architectures = model_config.get("architectures") or []
    if not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        reasons.append("Only causal language models (text generators) can be quantized here.")
    if config.group_size is not None and method != "int4_weight":
        group_reasons.append(f"{method} takes no group size (it uses one scale per row); leave it empty.")
    if method == "int4_weight":
        group = config.group_size or DEFAULT_GROUP_SIZE
        if group < 1:
            group_reasons.append("The group size must be a positive number.")
        else:
            bad = sorted({w for w in _linear_in_features(source_dir).values() if w % group})
            if bad:
                group_reasons.append(
                    f"Group size {group} does not divide the layer width{'s' if len(bad) > 1 else ''} "
                    f"{', '.join(map(str, bad))}; choose a size that divides every width (e.g. 32)."
                )
    if method in TORCHAO_METHODS and device_type not in {"cpu", "cuda"}:
        reasons.append(f"torchao has no {method} kernels for {device_type}; run it on a CPU or CUDA worker.")
    if method == "int4_weight" and device_type == "cuda":
        if not torch.cuda.is_available():
            reasons.append("The worker has no CUDA device for the GPU int4 kernel.")
        elif torch.cuda.get_device_capability()[0] < 8:
            reasons.append("The GPU int4 kernel (tinygemm) needs compute capability 8.0 or newer.")
        if (config.group_size or DEFAULT_GROUP_SIZE) not in GROUP_SIZES:
            group_reasons.append(f"The GPU int4 kernel takes group sizes {', '.join(map(str, GROUP_SIZES))}.")
    if method == "gguf_q8_0":
        if not any(a in GGUF_ARCHITECTURES for a in architectures):
            reasons.append(
                f"GGUF export supports {', '.join(GGUF_ARCHITECTURES)} models; this one is "
                f"{', '.join(architectures) or 'unknown'}."
            )
        tok_path = Path(source_dir) / "tokenizer.json"
        if not tok_path.is_file() or json.loads(tok_path.read_text()).get("model", {}).get("type") != "BPE":
            reasons.append("GGUF export needs a byte-level BPE tokenizer (tokenizer.json with a BPE model).")
    return [Problem(r) for r in reasons] + [Problem(r, "group_size") for r in group_reasons]


# --- running ------------------------------------------------------------------------------------------
def run_quantize(source_dir: Path, out_dir: Path, config: QuantizeConfig, ctx: JobContext) -> QuantizeResult:
    """Write the quantized model folder into out_dir (safetensors, config, tokenizer; plus the .gguf)."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    reasons = check_quantize(config, source_dir, ctx.device)
    if reasons:
        raise JobFailed(" ".join(reasons))
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.iterdir())
    try:
        if config.method == "gguf_q8_0":
            result = _run_gguf(source_dir, out_dir, ctx)
        else:
            result = _run_torch(source_dir, out_dir, config, ctx)
        for name in _TOKENIZER_FILES:
            if (source_dir / name).is_file() and not (out_dir / name).exists():
                shutil.copy2(source_dir / name, out_dir / name)
        result.files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
        ctx.report(Update(step=1, total=1, phase="saving", log=f"Wrote {', '.join(result.files)}"))
        return result
    except BaseException as exc:
        # A failed or cancelled job leaves no half-written model: remove what this run wrote.
        for item in set(out_dir.iterdir()) - before:
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
        if isinstance(exc, torch.OutOfMemoryError):
            raise JobFailed("Out of memory while quantizing; use a worker with more memory.") from exc
        raise


def _load_source(source_dir: Path, dtype: torch.dtype, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        source_dir, dtype=dtype, use_safetensors=True, local_files_only=True, trust_remote_code=False
    )
    return model.to(device).eval()  # type: ignore[arg-type]


def _work_dtype(device: str) -> torch.dtype:
    from llmcore.loading import default_dtype

    return default_dtype(torch.device(device))


def _torchao_config(config: QuantizeConfig, device: str) -> tuple[Any, str]:
    from torchao.quantization import (
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        PerGroup,
    )

    if config.method == "int8_weight":
        return Int8WeightOnlyConfig(), "torchao Int8WeightOnlyConfig (one scale per output row)"
    if config.method == "int8_dynamic":
        return Int8DynamicActivationInt8WeightConfig(), "torchao Int8DynamicActivationInt8WeightConfig"
    group = config.group_size or DEFAULT_GROUP_SIZE
    if torch.device(device).type == "cuda":
        return (
            Int4WeightOnlyConfig(group_size=group, int4_packing_format="tile_packed_to_4d"),
            f"torchao Int4WeightOnlyConfig, tinygemm packing, group size {group} (loads on CUDA only)",
        )
    return (
        IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group)),  # type: ignore[attr-defined]
        f"torchao IntxWeightOnlyConfig int4, group size {group} (CPU variant: one int4 value per byte)",
    )


def _run_torch(source_dir: Path, out_dir: Path, config: QuantizeConfig, ctx: JobContext) -> QuantizeResult:
    ctx.report(Update(phase="loading", log=f"Loading {source_dir.name}"))
    if config.method in {"bf16", "fp16"}:
        dtype = torch.bfloat16 if config.method == "bf16" else torch.float16
        model = _load_source(source_dir, dtype, "cpu")  # a cast needs no accelerator
        ctx.check_cancelled()
        ctx.report(Update(step=1, total=1, phase="casting", log=f"Cast every weight to {dtype}"))
        model.save_pretrained(out_dir, safe_serialization=True)
        return QuantizeResult(
            files=[], notes=[f"Every floating-point weight cast to {dtype}."], extra={"dtype": str(dtype)[6:]}
        )

    from torchao.quantization import quantize_
    from transformers import TorchAoConfig
    from transformers.quantizers.auto import AutoHfQuantizer

    dtype = _work_dtype(ctx.device)
    model = _load_source(source_dir, dtype, ctx.device)
    ao_config, variant = _torchao_config(config, ctx.device)
    layers = model.get_decoder().layers
    for index, layer in enumerate(layers):
        ctx.check_cancelled()
        # Layer by layer (not quantize_ on the whole model) so that progress and cancel work per layer.
        quantize_(layer, ao_config, filter_fn=lambda module, _fqn: isinstance(module, torch.nn.Linear))
        ctx.report(Update(step=index + 1, total=len(layers), phase="quantizing"))
    ctx.check_cancelled()
    # Mark the model as torchao-quantized the way from_pretrained(quantization_config=...) would, so that
    # save_pretrained writes torchao's safetensors layout and config.json records how to read it back.
    hf_config = TorchAoConfig(quant_type=ao_config)
    model.config.quantization_config = hf_config
    model.hf_quantizer = AutoHfQuantizer.from_config(hf_config, pre_quantized=False)
    ctx.report(Update(phase="saving", log="Saving the quantized weights as safetensors"))
    model.save_pretrained(out_dir, safe_serialization=True)
    extra: dict[str, Any] = {"dtype": str(dtype)[6:], "variant": variant}
    if "CUDA only" in variant:
        extra["requires_device"] = "cuda"
    if config.method == "int4_weight":
        extra["group_size"] = config.group_size or DEFAULT_GROUP_SIZE
    return QuantizeResult(
        files=[],
        notes=[variant, "The embedding table and output head stay unquantized."],
        extra=extra,
    )


def _run_gguf(source_dir: Path, out_dir: Path, ctx: JobContext) -> QuantizeResult:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcore.gguf_export import write_gguf_q8_0

    gguf_path = out_dir / GGUF_FILE
    write_gguf_q8_0(source_dir, gguf_path, ctx)
    ctx.check_cancelled()
    ctx.report(Update(phase="verifying", log="Reading the GGUF back with transformers"))
    model = AutoModelForCausalLM.from_pretrained(out_dir, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The weights are the dequantized Q8_0 values now: save them as ordinary safetensors.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    source = _load_source(source_dir, torch.float32, "cpu")
    tokenizer = AutoTokenizer.from_pretrained(source_dir, local_files_only=True, trust_remote_code=False)
    sample = "A lighthouse keeper counts the flashes: three white flashes every fifteen seconds."
    diff = gguf_logit_difference(source, model, tokenizer(sample)["input_ids"])
    ctx.check_cancelled()
    model.save_pretrained(out_dir, safe_serialization=True)
    return QuantizeResult(
        files=[],
        notes=[
            f"{GGUF_FILE}: Q8_0 weights (norms in float32) for llama.cpp-based tools.",
            "The catalog model holds the same Q8_0 weights dequantized to float32 safetensors.",
            f"Read back by transformers: top-1 agreement {diff['top1_agreement']:.3f} with the source, "
            f"largest logit difference {diff['max_abs_diff']:.4f}.",
        ],
        extra={"gguf_file": GGUF_FILE, "gguf_roundtrip": diff},
    )


def gguf_logit_difference(source: Any, roundtrip: Any, ids: list[int] | None = None) -> dict[str, float]:
    """Compare the logits of a model and its GGUF round trip on a few token ids."""
    vocab = int(source.config.vocab_size)
    ids_t = torch.tensor([ids or [i % vocab for i in range(1, 33)]])
    with torch.inference_mode():
        a = source(input_ids=ids_t).logits.float()
        b = roundtrip(input_ids=ids_t).logits.float()
    return {
        "max_abs_diff": float((a - b).abs().max()),
        "logit_scale": float(a.abs().max()),
        "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
    }


# --- verify ---------------------------------------------------------------------------------------------
def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor really holds: for a torchao tensor subclass, the sum of its inner tensors (its own
    nbytes reports the size of the floating-point tensor it stands for)."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None and type(tensor) is not torch.nn.Parameter:
        inner, _ = tensor.__tensor_flatten__()  # type: ignore[attr-defined]
        return sum(tensor_bytes(getattr(tensor, name)) for name in inner)
    data = tensor.data if isinstance(tensor, torch.nn.Parameter) else tensor
    if type(data) is not torch.Tensor:
        return tensor_bytes(data)
    return data.numel() * data.element_size()


def model_memory_bytes(model: Any) -> int:
    """Parameter and buffer bytes of a loaded model (shared tensors, such as tied embeddings, counted once).

    Chosen over the process's resident-memory change, which the allocator's caching and the other model
    loaded in the same process make unreliable; activations and the KV cache are not included."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor_bytes(tensor)
    return total


def decode_speeds(
    loaded: dict[str, Any],
    prompts: Sequence[str],
    new_tokens: int,
    packed_decode: Mapping[str, str] | None = None,
    as_chat: bool = False,
    warmup_tokens: int = 2,
) -> dict[str, dict[str, Any]]:
    """Mean decode tokens/s (the engine's own count: tokens after the first over the time after the
    first) and time to first token per model, greedy, `new_tokens` tokens per prompt, through the engine
    as chat runs it (llmcore.packed: on a CPU, a model on a 4-bit grid and a torchao child both run on
    PyTorch's integer kernels, so parent and child are compared like with like), and how it ran.

    `packed_decode`: the engine's mode per name ("auto" where it names none). `as_chat`: each prompt goes
    in as a user message under the model's chat template, as chat sends it; else as its bare token ids.
    The models take turns prompt by prompt, so a burst of load from elsewhere on a shared machine slows
    all of them rather than one. Used by `verify` and by `python -m bench quantize_speed`.
    """
    from llmcore.engine import Engine, GenerationRequest, StatsEvent
    from llmcore.sampling import SamplingConfig

    modes = packed_decode or {}
    engines = {name: Engine(model, packed_decode=modes.get(name, "auto")) for name, model in loaded.items()}
    speeds: dict[str, list[float]] = {name: [] for name in loaded}
    ttfts: dict[str, list[float]] = {name: [] for name in loaded}
    try:
        for engine in engines.values():
            engine.generate(GenerationRequest(prompt_ids=[0, 1, 2], max_new_tokens=warmup_tokens))  # warm-up
        for prompt in prompts:
            for name, engine in engines.items():
                request = GenerationRequest(
                    prompt_ids=None if as_chat else loaded[name].tokenizer(prompt)["input_ids"],
                    messages=[{"role": "user", "content": prompt}] if as_chat else None,
                    sampling=SamplingConfig(temperature=0),
                    max_new_tokens=new_tokens,
                    ignore_stop_tokens=True,
                    top_alternatives=0,
                    seed=0,
                )
                stats = next(e for e in engine.generate(request) if isinstance(e, StatsEvent))
                if stats.tokens_per_s:
                    speeds[name].append(stats.tokens_per_s)
                if stats.time_to_first_token_s is not None:
                    ttfts[name].append(stats.time_to_first_token_s)
    finally:
        for engine in engines.values():
            engine.close()
    return {
        name: {
            "tokens_per_s": sum(speeds[name]) / len(speeds[name]) if speeds[name] else 0.0,
            "ttft_s": sum(ttfts[name]) / len(ttfts[name]) if ttfts[name] else 0.0,
            "decode": engines[name].decode.label,
        }
        for name in loaded
    }


def _disk_bytes(folder: Path) -> dict[str, int]:
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    gguf = sum(p.stat().st_size for p in folder.glob("*.gguf"))
    return {"weights": weights, "gguf": gguf}


def verify(
    parent_dir: Path,
    quant_dir: Path,
    ctx: JobContext,
    prompts: list[str] | None = None,
    max_tokens: int = 4096,
    new_tokens: int = 32,
) -> dict[str, Any]:
    """Parent and quantized model measured side by side, in one run, on this worker (ctx.device).

    Sizes are the safetensors weights on disk (and the .gguf file, for a GGUF export; its size is what the
    comparison uses). Memory is parameter and buffer bytes once loaded the way the playground loads the
    model (llmcore.loading). Speed: greedy decoding of `new_tokens` tokens per prompt via llmcore.engine.
    Perplexity on HELDOUT_TEXT; top-1 agreement and mean KL of the next-token distributions.
    """
    from llmcore import evaluate
    from llmcore.loading import load_folder

    prompts = list(prompts or evaluate.DEFAULT_PROMPTS)
    device = torch.device(ctx.device)
    text = evaluate.heldout_text()
    report: dict[str, Any] = {
        "device": str(device),
        "prompts": len(prompts),
        "new_tokens": new_tokens,
        "memory_measured_as": "parameter and buffer bytes of the loaded model",
    }
    loaded: dict[str, Any] = {}
    steps = 6
    for step, (side, folder) in enumerate((("parent", Path(parent_dir)), ("quantized", Path(quant_dir)))):
        ctx.check_cancelled()
        ctx.report(Update(step=step + 1, total=steps, phase="verifying", log=f"Loading the {side} model"))
        model = load_folder(folder, device=device)
        loaded[side] = model
        disk = _disk_bytes(folder)
        report[side] = {
            "disk_bytes": disk["gguf"] or disk["weights"],
            "safetensors_bytes": disk["weights"],
            "memory_bytes": model_memory_bytes(model.model),
            "dtype": str(model.dtype).removeprefix("torch."),
        }
        if disk["gguf"]:
            report[side]["gguf_bytes"] = disk["gguf"]
    for step, side in enumerate(("parent", "quantized")):
        ctx.check_cancelled()
        ctx.report(
            Update(step=3 + step, total=steps, phase="verifying", log=f"Perplexity of the {side} model")
        )
        ppl = evaluate.perplexity(loaded[side], text, max_tokens=max_tokens)
        report[side].update(perplexity=ppl["perplexity"], loss=ppl["loss"], perplexity_tokens=ppl["tokens"])
    ctx.check_cancelled()
    ctx.report(Update(step=5, total=steps, phase="verifying", log="Decode speed, both models in turn"))
    for side, numbers in decode_speeds(loaded, prompts, new_tokens).items():
        report[side].update(numbers)
    ctx.check_cancelled()
    ctx.report(Update(step=steps, total=steps, phase="verifying", log="Comparing next-token distributions"))
    report.update(evaluate.next_token_agreement(loaded["parent"], loaded["quantized"], prompts))
    report.update(side_ratios(report["parent"], report["quantized"]))
    report["summary"] = summary_sentence(report)
    return report


# What each measure of the report holds (its label, unit, and how a change reads): the job page, the
# catalog page and the verdict read them from here.
SIDE_MEASURES = {
    "disk_bytes": Measure(
        "Size on disk", "bytes", "lower", ("smaller", "bigger", "about as big"), phrase="{} on disk"
    ),
    "gguf_bytes": Measure("GGUF file", "bytes"),
    "safetensors_bytes": Measure("Safetensors weights", "bytes"),
    "memory_bytes": Measure(
        "Memory once loaded", "bytes", "lower", ("less", "more", "about as much"), phrase="{} memory"
    ),
    "dtype": Measure("Dtype once loaded"),  # as the playground loads it (llmcore.loading), not as stored
    "perplexity": Measure(
        "Perplexity on held-out text", "", "lower", ("lower", "higher", "the same"), False, "{} perplexity"
    ),
    "loss": Measure("Loss on held-out text", "nats/token", "lower", ("lower", "higher", "the same"), False),
    "perplexity_tokens": Measure("Held-out tokens", "tokens"),
    "tokens_per_s": Measure("Decode speed", "tokens/s", "higher", ("faster", "slower", "about as fast")),
    "ttft_s": Measure("Time to first token", "s", "lower", ("sooner", "later", "about as soon")),
    "decode": Measure("Decode kernel"),
}
FACT_MEASURES = {
    "device": Measure("Measured on"),
    "prompts": Measure("Prompts"),
    "new_tokens": Measure("New tokens per prompt", "tokens"),
    "top1_agreement": Measure("Top-1 agreement with the parent", "share"),
    "mean_kl": Measure("Mean KL divergence from the parent", "nats"),
    "positions": Measure("Positions compared", "tokens"),
    "memory_measured_as": Measure("Memory measured as"),
}
# The report's ratios (bench/quantize.py and the Accelerate plots read them) and the measure each is of.
RATIOS = {
    "size_ratio": "disk_bytes",
    "memory_ratio": "memory_bytes",
    "perplexity_change_pct": "perplexity",
    "speed_ratio": "tokens_per_s",
}


def side_ratios(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, float]:
    """size_ratio (parent's bytes over the child's), memory_ratio, perplexity_change_pct and speed_ratio
    (the child's tokens/s over the parent's); 0.0 where a side lacks the number."""
    found = {}
    for name, key in RATIOS.items():
        moved = change(SIDE_MEASURES[key], parent.get(key), child.get(key))
        found[name] = moved.value if moved else 0.0
    return found


def summary_sentence(report: dict[str, Any]) -> str | None:
    """One plain sentence, from the measured numbers alone: was it worth it? Worth it when the model got at
    least 1.3x smaller on disk or in memory, perplexity rose less than 5 % and decoding got no slower; not
    worth it when perplexity rose 20 % or more, or nothing got smaller or faster; otherwise a trade-off.
    The speeds are the engine's as chat runs each model: where the two ran different kernels, it says
    which. None when the report lacks the sizes or perplexities to judge by."""
    parent, child = report.get("parent"), report.get("quantized")
    if not isinstance(parent, dict) or not isinstance(child, dict):
        return None
    moved = {k: change(SIDE_MEASURES[k], parent.get(k), child.get(k)) for k in RATIOS.values()}
    size, memory, ppl, speed = (moved[k] for k in RATIOS.values())
    if ppl is None or (size is None and memory is None):
        return None
    smaller = max(m.value for m in (size, memory) if m is not None)
    slower, faster = speed is not None and speed.direction < 0, speed is not None and speed.direction > 0
    if ppl.value >= 20 or (smaller < 1.05 and not faster):
        verdict = "Not worth it"
    elif smaller >= 1.3 and ppl.value < 5 and not slower:
        verdict = "Worth it"
    else:
        verdict = "A trade-off"
    device = str(report.get("device", "cpu"))
    where = "GPU" if device.startswith("cuda") else device.split(":")[0].upper()
    said: dict[int, list[str]] = {1: [], -1: [], 0: []}
    for key, m in moved.items():
        if m is not None:
            text = SIDE_MEASURES[key].phrase.format(m.text)
            if key == "tokens_per_s":
                text += f" on this {where}" + _kernels(parent, child)
            said[m.direction].append(text)
    gains, costs = ", ".join(said[1]), ", ".join(said[-1])
    sentence = f"{gains}, but {costs}" if gains and costs else gains or costs
    if said[0]:
        sentence += "; " + ", ".join(said[0])
    if isinstance(report.get("top1_agreement"), int | float):
        sentence += f"; {100 * report['top1_agreement']:.1f} % top-1 agreement"
    return f"{verdict}: {sentence}."


def _kernels(parent: dict[str, Any], child: dict[str, Any]) -> str:
    """Which kernel each side decoded with, where they differ (the speeds are then not like with like)."""
    a, b = parent.get("decode"), child.get("decode")
    return f" (the parent ran {a}, the quantized model {b})" if a and b and a != b else ""


__all__ = [
    "QUANT_METHODS",
    "JobCancelled",
    "QuantizeConfig",
    "QuantizeResult",
    "check_quantize",
    "run_quantize",
    "verify",
]
