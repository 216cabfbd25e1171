from __future__ import annotations

import math

import pytest
import torch

from llmcore.sampling import (
    SamplingConfig,
    apply_repetition_penalty,
    explain,
    generator_for,
    min_p_filter,
    sample,
    top_k_filter,
    top_p_filter,
    warp,
)

# A small distribution with known probabilities: 0.5, 0.25, 0.125, 0.0625, 0.0625.
PROBS = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625])
LOGITS = torch.log(PROBS)


def kept(logits: torch.Tensor) -> list[int]:
    return [i for i, v in enumerate(logits.tolist()) if math.isfinite(v)]


def test_top_k_keeps_the_k_most_likely_tokens() -> None:
    assert kept(top_k_filter(LOGITS, 2)) == [0, 1]
    assert kept(top_k_filter(LOGITS, 0)) == [0, 1, 2, 3, 4]


def test_top_p_keeps_the_smallest_set_that_reaches_p() -> None:
    assert kept(top_p_filter(LOGITS, 0.75)) == [0, 1]
    assert kept(top_p_filter(LOGITS, 0.76)) == [0, 1, 2]
    assert kept(top_p_filter(LOGITS, 0.01)) == [0]  # the top token always stays


def test_min_p_is_relative_to_the_most_likely_token() -> None:
    assert kept(min_p_filter(LOGITS, 0.25)) == [0, 1, 2]  # 0.125 >= 0.25 * 0.5
    assert kept(min_p_filter(LOGITS, 0.3)) == [0, 1]


def test_temperature_sharpens_below_one_and_flattens_above() -> None:
    cold = torch.softmax(warp(LOGITS, SamplingConfig(temperature=0.5)), -1)
    hot = torch.softmax(warp(LOGITS, SamplingConfig(temperature=2.0)), -1)
    assert cold[0] > PROBS[0] > hot[0]
    assert torch.allclose(cold, PROBS**2 / (PROBS**2).sum())


def test_greedy_is_the_temperature_zero_limit() -> None:
    assert sample(LOGITS, SamplingConfig(temperature=0)) == 0
    final = torch.softmax(warp(LOGITS, SamplingConfig(temperature=0)), -1)
    assert final.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    near = torch.softmax(warp(LOGITS, SamplingConfig(temperature=0.05)), -1)
    assert near[0] > 0.999


def test_repetition_penalty_lowers_tokens_already_seen() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5])
    out = apply_repetition_penalty(logits, [0, 1], 2.0)
    assert out.tolist() == [1.0, -2.0, 0.5]


def test_the_order_of_stages_changes_the_result() -> None:
    # top-p before temperature sees the original distribution; after a hot temperature it keeps more.
    first = SamplingConfig(temperature=3.0, top_p=0.75, order=("top_p", "temperature", "top_k", "min_p"))
    after = SamplingConfig(temperature=3.0, top_p=0.75, order=("temperature", "top_p", "top_k", "min_p"))
    assert kept(warp(LOGITS, first)) == [0, 1]
    assert len(kept(warp(LOGITS, after))) > 2


def test_explain_reports_each_stage_over_the_whole_vocabulary() -> None:
    stages = explain(LOGITS, SamplingConfig(temperature=1.0, top_k=4, top_p=0.85), previous_ids=[])
    names = [s.name for s in stages]
    assert names == ["softmax", "repetition_penalty", "temperature", "top_k", "top_p", "min_p"]
    assert all(s.probs.numel() == 5 for s in stages)
    assert all(abs(float(s.probs.sum()) - 1) < 1e-6 for s in stages)
    by_name = {s.name: s for s in stages}
    assert by_name["top_k"].kept == 4
    assert by_name["top_k"].cut_count == 1
    assert by_name["top_k"].cut[0] in (3, 4)  # one of the two tied least likely tokens
    assert by_name["top_p"].kept == 3
    assert by_name["softmax"].entropy == pytest.approx(1.875)  # bits
    assert not by_name["temperature"].active
    assert by_name["top_p"].active


def test_bad_settings_are_refused() -> None:
    for bad in [
        {"temperature": -1},
        {"top_p": 0},
        {"top_p": 1.5},
        {"min_p": 1},
        {"top_k": -2},
        {"repetition_penalty": 0},
        {"order": ("top_k", "top_k", "top_p", "min_p")},
    ]:
        with pytest.raises(ValueError):
            SamplingConfig(**bad)


def test_a_fixed_seed_draws_the_same_tokens() -> None:
    config = SamplingConfig(temperature=1.0)
    first = [sample(LOGITS, config, generator_for(7)) for _ in range(5)]
    second = [sample(LOGITS, config, generator_for(7)) for _ in range(5)]
    assert first == second


@pytest.mark.parametrize(
    "config",
    [SamplingConfig(), SamplingConfig(temperature=0.7, top_k=4), SamplingConfig(top_p=0.8, min_p=0.2)],
)
def test_observed_frequencies_match_the_computed_distribution(config: SamplingConfig) -> None:
    """Many draws with a fixed seed land within five standard errors of the distribution explain() shows."""
    torch.manual_seed(0)
    logits = torch.randn(12) * 1.5
    expected = explain(logits, config)[-1].probs
    draws = 20_000
    gen = generator_for(1234)
    counts = torch.zeros(12)
    for _ in range(draws):
        counts[sample(logits, config, gen)] += 1
    observed = counts / draws
    for token in range(12):
        p = float(expected[token])
        if p == 0:
            assert counts[token] == 0, f"token {token} was cut but drawn"
        else:
            tolerance = 5 * math.sqrt(p * (1 - p) / draws)
            assert abs(float(observed[token]) - p) <= tolerance, (token, float(observed[token]), p)
