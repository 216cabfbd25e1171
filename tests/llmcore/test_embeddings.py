"""Embeddings' input: typed text is encoded whole, without the padding and truncation a BERT-style
tokenizer file asks for (all-MiniLM-L6-v2's pads and cuts every text to 128 tokens)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcore.embeddings import EmbeddingError, token_ids
from llmcore.encoding import encode_text
from llmcore.loading import load_folder

TEXT = "the quick brown fox jumps over the lazy dog " * 3


def test_typed_text_is_neither_padded_nor_cut(tiny_bert_dir: Path) -> None:
    loaded = load_folder(tiny_bert_dir, is_causal=False, device="cpu")
    tokenizer = loaded.tokenizer
    tokenizer.backend_tokenizer.enable_padding(length=64)  # as MiniLM's tokenizer.json has it
    tokenizer.backend_tokenizer.enable_truncation(max_length=8)
    ids = encode_text(tokenizer, TEXT)
    assert len(ids) > 8
    assert tokenizer.pad_token_id not in ids
    assert ids[0] == tokenizer.cls_token_id
    assert ids[-1] == tokenizer.sep_token_id
    with pytest.raises(EmbeddingError, match=r"Input 1 is \d+ tokens; .* reads at most 40"):
        token_ids(loaded, ["short", TEXT * 3])  # over the encoder's 40 positions: refused, not cut
