"""Write a Llama-architecture model folder as a GGUF file with Q8_0 weights, for llama.cpp-based tools.

gguf-py (llama.cpp's own Python package) does the file format, the tensor names (TensorNameMap) and the
Q8_0 block quantization; what is written here is the part of llama.cpp's convert_hf_to_gguf.py that maps a
Llama config and a byte-level BPE tokenizer to GGUF metadata. That script is not shipped in any package
(it lives in the llama.cpp repository and imports half of it), so the few mappings it does for Llama are
repeated here. Supported: LlamaForCausalLM (Llama, SmolLM, TinyLlama...). Other architectures are refused
by llmcore.quantize.check_quantize before any work starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmcore.jobs import JobContext, Update

Q8_0_BLOCK = 32


def _permute_for_llama_cpp(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp applies rotary embeddings to interleaved pairs; Hugging Face Llama to two halves.

    convert_hf_to_gguf.py reorders the rows of q_proj and k_proj so that both give the same result, and
    transformers' GGUF reader undoes it; this is that reordering.
    """
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def _tokenizer_metadata(writer: Any, source_dir: Path, vocab_size: int) -> None:
    import gguf
    from transformers import AutoTokenizer

    data = json.loads((source_dir / "tokenizer.json").read_text())
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    added = {t["content"]: t for t in data.get("added_tokens", [])}
    for content, token in added.items():
        vocab[content] = token["id"]
    by_id = {i: t for t, i in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:  # an embedding row no token uses (tables are often padded)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif token in added:
            tokens.append(token)
            types.append(
                gguf.TokenType.CONTROL if added[token].get("special") else gguf.TokenType.USER_DEFINED
            )
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    # llama.cpp picks its pre-tokenizer regex by name: SmolLM-style tokenizers split digits one by one.
    pre = json.dumps(data.get("pre_tokenizer"))
    writer.add_tokenizer_pre("smollm" if '"individual_digits": true' in pre else "gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    tokenizer = AutoTokenizer.from_pretrained(source_dir, local_files_only=True, trust_remote_code=False)
    for setter, value in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_unk_token_id, tokenizer.unk_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
    ):
        if value is not None:
            setter(int(value))
    writer.add_add_bos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def write_gguf_q8_0(source_dir: Path, gguf_path: Path, ctx: JobContext) -> None:
    """Write `gguf_path` from a Llama model folder: 2-D weights as Q8_0, norms as float32."""
    import gguf
    from safetensors import safe_open
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source_dir, local_files_only=True, trust_remote_code=False)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    rope = getattr(config, "rope_parameters", None) or {}
    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    writer = gguf.GGUFWriter(str(gguf_path), arch)
    writer.add_name(source_dir.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _tokenizer_metadata(writer, source_dir, config.vocab_size)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    files = sorted(source_dir.glob("*.safetensors"))
    keys: list[tuple[Path, str]] = []
    for path in files:
        with safe_open(path, framework="pt") as fh:
            keys.extend((path, key) for key in fh.keys())  # noqa: SIM118 - safe_open is not a mapping
    for index, (path, key) in enumerate(keys):
        ctx.check_cancelled()
        if key.endswith("rotary_emb.inv_freq"):
            continue
        with safe_open(path, framework="pt") as fh:
            tensor = fh.get_tensor(key).float()
        if key.endswith("q_proj.weight"):
            tensor = _permute_for_llama_cpp(tensor, n_head)
        elif key.endswith("k_proj.weight"):
            tensor = _permute_for_llama_cpp(tensor, n_kv)
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"No GGUF name for tensor {key}")
        array = tensor.numpy()
        if array.ndim == 2 and array.shape[-1] % Q8_0_BLOCK == 0:
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:  # norms (1-D) stay float32, as llama.cpp's converter keeps them
            writer.add_tensor(name, array.astype(np.float32))
        ctx.report(Update(step=index + 1, total=len(keys), phase="quantizing"))
    ctx.report(Update(phase="saving", log=f"Writing {gguf_path.name}"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
