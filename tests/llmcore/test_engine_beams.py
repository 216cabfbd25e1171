"""Beam search runs through the engine's runner: its beams are rows of the shared decode pass. It must give
what transformers' own `generate(num_beams=...)` gives (the reference), alone or batched with other
streams, with end tokens, a repetition penalty and every length-penalty / early-stopping setting."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmcore.engine import Engine, GenerationRequest
from llmcore.engine.beam import BeamSearch
from llmcore.loading import load_model
from llmcore.sampling import SamplingConfig
from tests.llmcore.test_engine import split

GREEDY = SamplingConfig(temperature=0)
RANDOM = SamplingConfig(temperature=1.0)


@pytest.fixture
def loaded(store, tiny_model):
    return load_model(store, "tiny-llama", device="cpu")


def prompt(loaded, text: str) -> list[int]:
    return list(loaded.tokenizer.encode(text))


def reference(loaded, ids: list[int], beams: int, new: int, eos: list[int] | None, penalty: float = 1.0):
    """transformers' beam search: the generated tokens, up to (not with) the first end token."""
    x = torch.tensor([ids])
    out = loaded.model.generate(
        x,
        attention_mask=torch.ones_like(x),
        num_beams=beams,
        do_sample=False,
        max_new_tokens=new,
        repetition_penalty=penalty,
        eos_token_id=eos,
        pad_token_id=0,
    )[0, len(ids) :].tolist()
    for k, token in enumerate(out):
        if eos and token in eos:
            return out[:k], True
    return out, False


def beam_request(ids: list[int], beams: int, new: int, **kw) -> GenerationRequest:
    kw.setdefault("ignore_stop_tokens", False)
    kw.setdefault("sampling", GREEDY)
    return GenerationRequest(prompt_ids=ids, max_new_tokens=new, num_beams=beams, **kw)


@pytest.mark.parametrize(
    ("length_penalty", "early_stopping"),
    [(1.0, False), (0.5, False), (2.0, "never"), (1.0, True), (-1.0, False)],
)
def test_beams_with_end_tokens_equal_transformers(loaded, length_penalty, early_stopping) -> None:
    loaded.model.generation_config.length_penalty = length_penalty
    loaded.model.generation_config.early_stopping = early_stopping
    checked = ended = 0
    for text in ("Hello world", "The cat sat", "a b c d e f"):
        ids = prompt(loaded, text)
        free, _ = reference(loaded, ids, 3, 14, None)
        # end tokens the search really meets: tokens of its own unconstrained answer
        for eos in (free[0], free[1], free[4]):
            want, stopped = reference(loaded, ids, 3, 14, [eos])
            ended += stopped
            model = dataclasses.replace(loaded, stop_token_ids=[eos])
            with Engine(model) as engine:
                tokens, _, done = split(engine.generate(beam_request(ids, 3, 14)))
            assert [t.id for t in tokens] == want, (text, eos)
            assert done[0].reason == ("stop" if stopped else "length")
            checked += 1
    assert checked == 9
    if length_penalty < 0 or early_stopping is True:  # short answers win there: the end token is chosen
        assert ended >= 3


def test_beams_with_a_repetition_penalty_equal_transformers(loaded) -> None:
    ids = prompt(loaded, "la la la la la")
    want, _ = reference(loaded, ids, 4, 12, None, penalty=1.8)
    plain, _ = reference(loaded, ids, 4, 12, None)
    assert want != plain  # the penalty changes the answer, so the comparison can fail
    with Engine(loaded) as engine:
        tokens, _, _ = split(
            engine.generate(
                beam_request(
                    ids,
                    4,
                    12,
                    ignore_stop_tokens=True,
                    sampling=SamplingConfig(temperature=0, repetition_penalty=1.8),
                )
            )
        )
    assert [t.id for t in tokens] == want


def test_beams_share_the_decode_pass_with_other_streams(loaded) -> None:
    ids = prompt(loaded, "The cat sat")
    want, _ = reference(loaded, ids, 3, 16, None)
    with Engine(loaded) as engine:
        others = [
            engine.submit(
                GenerationRequest(
                    prompt_ids=ids, sampling=RANDOM, seed=i, max_new_tokens=40, ignore_stop_tokens=True
                )
            )
            for i in range(2)
        ]
        beams = engine.submit(beam_request(ids, 3, 16, ignore_stop_tokens=True))
        tokens, stats, done = split(beams.events())
        for other in others:
            assert split(other.events())[2][0].reason == "length"
        passes = engine.runner.forward_passes
    assert [t.id for t in tokens] == want
    # the beams ran as rows beside the two streams: 3 beams + 2 others in one pass
    assert stats[0].batch_size_max == 5
    assert [t.batch_size for t in tokens][:3] != [1, 1, 1]
    assert done[0].text == "".join(t.text for t in tokens) + done[0].tail
    # no separate generate(): the passes are the streams' steps, not a second model run per token
    assert passes < 2 * 40 + 16 + 10


def test_a_cancelled_beam_search_stops_at_once(loaded) -> None:
    ids = prompt(loaded, "Hello world")
    with Engine(loaded) as engine:
        stream = engine.submit(beam_request(ids, 3, 200, ignore_stop_tokens=True))
        stream.cancel()
        _, stats, done = split(stream.events())
        assert done[0].reason == "cancelled"
        assert engine.runner.forward_passes < 20
        assert not engine.scheduler.rows  # its rows are free
        # and the engine serves the next one
        tokens, _, done = split(engine.generate(beam_request(ids, 2, 5, ignore_stop_tokens=True)))
    assert len(tokens) == 5
    assert done[0].reason == "length"


def test_beam_answer_uses_the_prefix_cache_and_records_probabilities(loaded) -> None:
    ids = prompt(loaded, "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 2)
    with Engine(loaded) as engine:
        first = split(engine.generate(beam_request(ids, 2, 8, ignore_stop_tokens=True)))
        second = split(engine.generate(beam_request(ids, 2, 8, ignore_stop_tokens=True)))
    assert [t.id for t in first[0]] == [t.id for t in second[0]]
    assert second[1][0].cached_prompt_tokens >= 16
    # each token's probability is the model's own, recomputed from one pass over the answer
    x = torch.tensor([ids + [t.id for t in first[0]]])
    with torch.inference_mode():
        logprobs = torch.log_softmax(loaded.model(x).logits[0].float(), dim=-1)
    for k, token in enumerate(first[0]):
        assert token.model_logprob == pytest.approx(float(logprobs[len(ids) - 1 + k, token.id]), abs=1e-4)


def test_beam_search_books_follow_the_rule() -> None:
    # Two beams over a vocabulary of 4, end token 3: step 1 expands beam 0 only.
    search = BeamSearch(beams=2, max_new=5, stop_ids=frozenset({3}))
    lp = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]]))
    assert search.advance(lp) == [0, 0]
    assert search.tokens == [[0], [1]]
    # step 2: the end token ranks among the first two continuations -> a finished hypothesis
    lp = torch.log(torch.tensor([[0.15, 0.1, 0.05, 0.7], [0.1, 0.1, 0.7, 0.1]]))
    parents = search.advance(lp)
    assert search.finished[0].tokens == [0, 3]
    assert search.finished[0].ended_by_stop
    assert search.finished[0].score == pytest.approx(float((torch.log(torch.tensor(0.5 * 0.7))) / 2))
    assert parents == [1, 0]
    assert search.tokens == [[1, 2], [0, 0]]
    assert not search.done
