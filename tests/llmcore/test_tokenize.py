"""The tokenizer lab's core: pipeline steps, how pieces are shown, round trips, embeddings, RoPE, training."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers

from llmcore import tokenize as core
from llmcore.store import ModelStore

# Emoji with skin tone and a ZWJ family, CJK, a combining accent, "Zalgo" stacks of marks, tabs, runs of
# spaces, CRLF, control characters, right-to-left text, no-break and zero-width spaces, a byte-order mark,
# mathematical letters outside the BMP and the last code point.
TRICKY = (
    "Emoji 👋🏽👨‍👩‍👧 CJK 日本語の文章 e\u0301 Z̤͔ͧ̑̓ä͖̭̈̇lgo tabs\t\tand    runs of spaces\n\r\n"
    "ctrl \x00\x07\x1b del\x7f rtl مرحبا nbsp\u00a0 zwsp\u200b bom\ufeff 𝔘𝔫𝔦 \U0010ffff end "
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Tokenizers split text into pieces and map each piece to an integer id.",
    "Héllo wörld! Café naïve résumé.",
] * 30


@pytest.fixture
def tiny_tokenizer(store: ModelStore, tiny_model):
    return core.load_pretrained_tokenizer(store.path("tiny-llama"))


def byte_fallback_tokenizer() -> Tokenizer:
    """A SentencePiece-style tokenizer (Llama 2, Gemma): ▁ for spaces, <0xNN> tokens for unknown bytes."""
    vocab = {"<unk>": 0, **{f"<0x{b:02X}>": b + 1 for b in range(256)}}
    for piece in ["▁", "a", "b", "▁a", "▁b"]:
        vocab[piece] = len(vocab)
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=[("▁", "a"), ("▁", "b")], byte_fallback=True, unk_token="<unk>")
    )
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return tok


# --- showing pieces -------------------------------------------------------------------------------
def test_spaces_tabs_and_newlines_are_made_visible(tiny_tokenizer) -> None:
    result = core.tokenize(tiny_tokenizer, "a  b\tc\nd")
    shown = "".join(t.display for t in result.tokens)
    assert shown == "a··b→c↵d"
    assert {p.kind for t in result.tokens for p in t.pieces} == {"text", "space"}


def test_byte_level_stand_ins_are_decoded_and_split_characters_show_their_bytes(tiny_tokenizer) -> None:
    result = core.tokenize(tiny_tokenizer, " 👋")
    assert result.tokens[0].text.startswith("Ġ")  # the vocabulary's stand-in for a space
    assert result.tokens[0].display.startswith("·")
    byte_tokens = [t for t in result.tokens if t.byte]
    assert byte_tokens, "the tiny vocabulary has no emoji: they must come out as bytes"
    shown = "".join(p.text for t in result.tokens for p in t.pieces if p.kind == "byte")
    assert shown == "<0xF0><0x9F><0x91><0x8B>"
    assert all(t.source == "👋" for t in byte_tokens)


def test_byte_fallback_tokens_show_as_bytes_and_the_metaspace_as_a_dot() -> None:
    result = core.tokenize(byte_fallback_tokenizer(), "a b ✓")
    assert [t.display for t in result.tokens] == ["·a", "·b", "·", "<0xE2>", "<0x9C>", "<0x93>"]
    assert [t.byte for t in result.tokens] == [False, False, False, True, True, True]
    assert result.round_trip_exact


def test_control_and_invisible_characters_are_named() -> None:
    pieces = core.pieces_of_text("\x07\u200d\x7f")
    assert [(p.kind, p.text) for p in pieces] == [
        ("control", "␇"),
        ("control", "U+200D"),
        ("control", "U+007F"),
    ]
    assert core.pieces_of_text("\u0301") == [core.Piece("text", "◌\u0301")]  # a lone accent gets a circle


def test_special_tokens_in_the_text_are_flagged_when_parsing_is_asked_for(tiny_tokenizer) -> None:
    result = core.tokenize(tiny_tokenizer, "<|im_start|>hi", parse_special=True)
    first = result.tokens[0]
    assert (first.text, first.special, first.display) == ("<|im_start|>", True, "<|im_start|>")
    assert not any(t.special for t in result.tokens[1:])


def test_special_token_text_stays_text_by_default(tiny_tokenizer) -> None:
    result = core.tokenize(tiny_tokenizer, "<|im_start|>hi")
    assert not any(t.special for t in result.tokens)
    assert len(result.tokens) > 2
    assert "".join(t.source for t in result.tokens) == "<|im_start|>hi"
    assert result.round_trip_exact


def test_counts_are_tokens_characters_and_utf8_bytes(tiny_tokenizer) -> None:
    result = core.tokenize(tiny_tokenizer, "héllo 👋")
    assert (result.counts.characters, result.counts.bytes) == (7, 11)
    assert result.counts.tokens == len(result.tokens) == len(result.ids)
    assert result.counts.characters_per_token == round(7 / result.counts.tokens, 2)


# --- round trips ----------------------------------------------------------------------------------
def test_the_tiny_tokenizer_gives_tricky_unicode_back_exactly(tiny_tokenizer) -> None:
    result = core.tokenize(tiny_tokenizer, TRICKY)
    assert result.decoded == TRICKY
    assert result.round_trip_exact


def test_a_lowercasing_tokenizer_says_its_round_trip_differs() -> None:
    tok = core.train_tokenizer(CORPUS, core.TrainConfig(kind="bpe", vocab_size=300, lowercase=True))
    result = core.tokenize(tok, "Hello")
    assert not result.round_trip_exact
    assert result.decoded == "hello"


def test_half_a_surrogate_pair_is_refused_with_a_message(tiny_tokenizer) -> None:
    with pytest.raises(core.TokenizeError, match="surrogate"):
        core.tokenize(tiny_tokenizer, "a\ud800b")


# --- the pipeline ---------------------------------------------------------------------------------
def test_the_pipeline_of_a_byte_level_tokenizer_has_no_normalizer(tiny_tokenizer) -> None:
    steps = core.pipeline(tiny_tokenizer, "Hello world")
    assert (steps.normalizer, steps.normalized) == (None, None)
    assert steps.pre_tokenizer == "ByteLevel"
    assert [(w.text, w.start, w.end) for w in steps.pre_tokens] == [("Hello", 0, 5), ("Ġworld", 5, 11)]
    assert "".join(p.text for p in steps.pre_tokens[1].pieces) == "·world"
    assert steps.model == "BPE"
    assert steps.tokenization.ids == core.tokenize(tiny_tokenizer, "Hello world").ids


def test_the_pipeline_shows_what_normalization_did() -> None:
    config = core.TrainConfig(kind="wordpiece", vocab_size=200, lowercase=True, strip_accents=True)
    tok = core.train_tokenizer(CORPUS, config)
    steps = core.pipeline(tok, "Héllo, Wörld")
    assert steps.normalizer == "NFD → StripAccents → Lowercase"
    assert steps.normalized == "hello, world"
    assert [w.text for w in steps.pre_tokens] == ["hello", ",", "world"]
    assert steps.model == "WordPiece"
    continued = [t for t in steps.tokenization.tokens if t.text.startswith("##")]
    assert all(t.pieces[0] == core.Piece("marker", "##") for t in continued)


def test_a_sentencepiece_style_normalizer_is_described() -> None:
    steps = core.pipeline(byte_fallback_tokenizer(), "a b")
    assert steps.normalizer == "Prepend('▁') → Replace(' ' → '▁')"
    assert steps.normalized == "▁a▁b"
    assert steps.pre_tokenizer is None


# --- embeddings and positions ---------------------------------------------------------------------
def test_embeddings_are_rows_of_the_input_embedding_table(store: ModelStore, tiny_model) -> None:
    from llmcore.loading import load_model

    loaded = load_model(store, "tiny-llama", device="cpu")
    ids = core.tokenize(loaded.tokenizer, "Hello world, hello").ids
    emb = core.embed_tokens(loaded.model, ids, dims=8, limit=3)
    table = loaded.model.get_input_embeddings().weight
    assert (emb.hidden_size, emb.dims, emb.total_tokens, len(emb.rows)) == (64, 8, len(ids), 3)
    for row in emb.rows:
        assert row.token_id == ids[row.position]
        assert row.norm == pytest.approx(table[row.token_id].norm().item(), rel=1e-3)
        assert row.values == pytest.approx(table[row.token_id][:8].tolist(), abs=1e-4)
    assert emb.scale == max(abs(v) for r in emb.rows for v in r.values)


def test_rope_frequencies_come_from_the_config() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=64, num_attention_heads=4, rope_parameters={"rope_theta": 500.0, "rope_type": "default"}
    )
    (rope,) = core.rope_of(config)
    assert (rope.base, rope.rotary_dim, len(rope.frequencies)) == (500.0, 16, 8)
    assert rope.frequencies[0] == 1.0
    assert rope.frequencies[3] == pytest.approx(500.0 ** (-6 / 16))
    assert rope.angles(10) == pytest.approx((10.0, 10 * 500.0 ** (-14 / 16)))


def test_rope_per_layer_type_and_no_rope_at_all() -> None:
    per_layer = SimpleNamespace(
        num_attention_heads=2,
        head_dim=8,
        hidden_size=16,
        rope_parameters={"full_attention": {"rope_theta": 1e6}, "sliding_attention": {"rope_theta": 1e4}},
    )
    assert [(r.label, r.base) for r in core.rope_of(per_layer)] == [
        ("full_attention", 1e6),
        ("sliding_attention", 1e4),
    ]
    learned = SimpleNamespace(num_attention_heads=2, hidden_size=16, max_position_embeddings=512)
    assert core.rope_of(learned) == []


# --- chat templates -------------------------------------------------------------------------------
def test_the_chat_template_marks_its_special_tokens(tiny_tokenizer) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    chat = core.render_chat(tiny_tokenizer, messages, generation_prompt=True)
    assert chat.text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert [run for run, special in chat.segments if special] == [
        "<|im_start|>",
        "<|im_end|>",
        "<|im_start|>",
    ]
    assert "".join(run for run, _ in chat.segments) == chat.text
    assert chat.special_count == 3


def test_a_tokenizer_without_a_chat_template_says_so() -> None:
    tok = core.train_tokenizer(CORPUS, core.TrainConfig(kind="bpe", vocab_size=300))
    with pytest.raises(core.NoChatTemplate, match="no chat template"):
        core.render_chat(tok, [{"role": "user", "content": "Hi"}])


# --- training -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "model"), [("bpe", "BPE"), ("unigram", "Unigram"), ("wordpiece", "WordPiece")]
)
def test_each_kind_trains_a_working_tokenizer(kind: str, model: str) -> None:
    tok = core.train_tokenizer(CORPUS, core.TrainConfig(kind=kind, vocab_size=150))
    assert core.scheme_of(tok).model == model
    assert 0 < tok.get_vocab_size() <= 300
    result = core.tokenize(tok, "The quick brown fox")
    assert result.counts.tokens > 0
    assert result.decoded.replace(" ", "") == "Thequickbrownfox"


def test_a_byte_level_bpe_gives_any_text_back_exactly() -> None:
    tok = core.train_tokenizer(CORPUS, core.TrainConfig(kind="bpe", vocab_size=400))
    assert 257 < tok.get_vocab_size() <= 400  # 256 bytes, a special token, and what it learned
    assert core.tokenize(tok, TRICKY).round_trip_exact


def test_normalization_options_are_applied_in_order() -> None:
    config = core.TrainConfig(
        kind="unigram", vocab_size=100, unicode_form="NFKC", lowercase=True, strip_accents=True
    )
    tok = core.train_tokenizer(CORPUS, config)
    assert tok.normalizer.normalize_str("Ｃafé ﬁ") == "cafe fi"  # full-width C and the fi ligature: NFKC


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (core.TrainConfig(vocab_size=10), "between 100 and 50000"),
        (core.TrainConfig(vocab_size=10**6), "between 100 and 50000"),
        (core.TrainConfig(kind="sentencepiece"), "Unknown tokenizer kind"),
        (core.TrainConfig(unicode_form="NFX"), "Unknown Unicode normalization"),
    ],
)
def test_bad_training_options_are_refused(config: core.TrainConfig, message: str) -> None:
    with pytest.raises(core.TrainError, match=message):
        core.train_tokenizer(CORPUS, config)


def test_training_on_nothing_is_refused() -> None:
    with pytest.raises(core.TrainError, match="empty"):
        core.train_tokenizer(["   ", "\n"], core.TrainConfig())


def test_a_unigram_vocabulary_smaller_than_the_alphabet_is_explained() -> None:
    many_characters = [
        "".join(chr(0x4E00 + i) for i in range(start, start + 50)) for start in range(0, 300, 50)
    ]
    with pytest.raises(core.TrainError, match="smaller than the number of different characters"):
        core.train_tokenizer(many_characters, core.TrainConfig(kind="unigram", vocab_size=100))


def test_padding_and_truncation_set_in_a_tokenizer_file_are_ignored() -> None:
    tok = core.train_tokenizer(CORPUS, core.TrainConfig(kind="wordpiece", vocab_size=200))
    tok.enable_padding(length=64, pad_token="[PAD]", pad_id=tok.token_to_id("[PAD]"))
    tok.enable_truncation(max_length=3)
    result = core.tokenize(tok, "the quick brown fox jumps")
    assert [t.text for t in result.tokens][:3] == ["the", "quick", "brown"]
    assert result.counts.tokens == 5
    assert tok.padding is not None, "the tokenizer itself is left as it was"
