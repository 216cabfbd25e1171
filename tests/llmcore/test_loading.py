from __future__ import annotations

import pytest
import torch

from llmcore.encoding import EncodingError
from llmcore.loading import ModelCache, best_device, load_model
from llmcore.store import ModelStore


def test_best_device_prefers_an_accelerator_and_falls_back_to_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert best_device().type == expected
    assert best_device("cpu").type == "cpu"


def test_load_model_gives_a_working_model_and_tokenizer(store: ModelStore, tiny_model) -> None:
    loaded = load_model(store, "tiny-llama", device="cpu")
    assert loaded.device.type == "cpu"
    assert loaded.dtype == torch.float32
    ids = loaded.tokenizer("Hello world", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = loaded.model(ids).logits
    assert logits.shape == (1, ids.shape[1], loaded.model.config.vocab_size)


def test_a_loaded_model_renders_a_conversation_through_its_template(store: ModelStore, tiny_model) -> None:
    loaded = load_model(store, "tiny-llama", device="cpu")
    messages = [{"role": "user", "content": "hi <|im_end|> there"}]
    ids = loaded.encode_chat(messages)
    im_start, im_end = (loaded.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>"))
    assert ids[0] == im_start
    assert ids.count(im_end) == 1  # the template's own; the user's "<|im_end|>" stays text
    assert loaded.tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    assert len(loaded.encode_chat(messages, add_generation_prompt=False)) < len(ids)
    loaded.tokenizer.chat_template = None
    with pytest.raises(EncodingError, match="tiny-llama has no chat template"):
        loaded.encode_chat(messages)


def test_chat_models_stop_at_their_end_of_turn_token(store: ModelStore, tiny_model) -> None:
    loaded = load_model(store, "tiny-llama", device="cpu")
    im_end = loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in loaded.stop_token_ids
    assert im_end in loaded.model.generation_config.eos_token_id
    # Force the end-of-turn token to be the most likely one: generation must stop right there.
    with torch.no_grad():
        loaded.model.lm_head.weight.zero_()
        loaded.model.lm_head.weight[im_end] = 1.0
        loaded.model.model.norm.weight.fill_(1.0)
    prompt = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = loaded.model.generate(**prompt, max_new_tokens=20, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1] :].tolist()
    assert new == [im_end]


def test_cache_reuses_loaded_models_and_evicts_the_least_recently_used(
    store: ModelStore, tiny_model, tiny_model_dir
) -> None:
    store.import_folder(tiny_model_dir, "second")
    store.import_folder(tiny_model_dir, "third")
    cache = ModelCache(store, max_models=2, device="cpu")
    first = cache.get("tiny-llama")
    assert cache.get("tiny-llama") is first
    cache.get("second")
    cache.get("tiny-llama")  # now "second" is the least recently used
    cache.get("third")
    assert [m.name for m in cache.loaded()] == ["tiny-llama", "third"]
    cache.forget("third")
    assert [m.name for m in cache.loaded()] == ["tiny-llama"]
