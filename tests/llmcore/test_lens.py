from __future__ import annotations

import pytest
import torch

from llmcore.lens import LensError, encode_prompt, logit_lens, next_token_logits
from llmcore.loading import load_model


@pytest.fixture
def tiny(store, tiny_model):
    return load_model(store, "tiny-llama", device="cpu")


def test_next_token_logits_are_the_models_last_position_logits(tiny) -> None:
    ids = encode_prompt(tiny, "Hello world")
    logits = next_token_logits(tiny, ids)
    with torch.no_grad():
        full = tiny.model(torch.tensor([ids])).logits[0, -1]
    assert logits.shape == (tiny.model.config.vocab_size,)
    assert torch.allclose(logits, full, atol=1e-5)


def test_the_lens_output_layer_is_the_models_own_prediction(tiny) -> None:
    ids = encode_prompt(tiny, "The quick brown fox")
    result = logit_lens(tiny, ids, top_n=3)
    assert result.layers == 2  # embeddings + 2 layers -> grid rows 0..2
    assert len(result.grid) == 3
    assert all(len(row) == len(ids) for row in result.grid)
    with torch.no_grad():
        probs = torch.softmax(tiny.model(torch.tensor([ids])).logits[0].float(), -1)
    for t, cell in enumerate(result.grid[-1]):
        assert cell.token_id == int(probs[t].argmax())
        assert cell.prob == pytest.approx(float(probs[t].max()), abs=1e-5)
        assert [i for i, _ in cell.top][0] == cell.token_id


def test_the_lens_applies_the_final_norm_to_middle_layers(tiny) -> None:
    ids = encode_prompt(tiny, "Hello")
    result = logit_lens(tiny, ids)
    with torch.no_grad():
        hidden = tiny.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[1]
        expected = tiny.model.lm_head(tiny.model.model.norm(hidden))[0, -1].argmax()
    assert result.grid[1][-1].token_id == int(expected)


def test_settled_at_is_the_first_layer_that_agrees_with_the_output(tiny) -> None:
    result = logit_lens(tiny, encode_prompt(tiny, "Hello world again"))
    for t, layer in enumerate(result.settled_at):
        assert layer is not None
        assert result.grid[layer][t].token_id == result.grid[-1][t].token_id
        assert all(
            result.grid[earlier][t].token_id != result.grid[-1][t].token_id for earlier in range(layer)
        )


def test_a_chat_prompt_is_rendered_through_the_template(tiny) -> None:
    ids = encode_prompt(tiny, "hi", as_chat=True)
    text = tiny.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\nhi<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_an_empty_prompt_is_refused(tiny) -> None:
    with pytest.raises(LensError, match="empty"):
        next_token_logits(tiny, [])
