"""The structured-output benchmark runs and reports its parts (`python -m bench grammar`), checked on the
tiny model. No timing is asserted here: speed targets are the benchmark's business."""

from __future__ import annotations

from bench import grammar
from tests.conftest import TINY_NAME


def test_the_grammar_bench_measures_plain_and_constrained_streams(store, tiny_model) -> None:
    result = grammar.measure(store.root, TINY_NAME, new_tokens=6, runs=1)
    single = result["single"]
    assert single["plain_tokens_per_second"] > 0
    assert single["constrained_tokens_per_second"] > 0
    assert single["constrained_over_plain"] > 0
    eight = result["eight"]
    assert eight["mixed_over_plain"] > 0
    assert eight["constrained_over_plain"] > 0
    parts = result["parts"]
    assert parts["steps"] > 5
    assert parts["mask_ms_median"] > 0
    assert parts["tokenizer_conversion_ms"] > 0
    assert set(result["targets"]) == {"constrained_single_over_plain", "one_constrained_in_eight_over_plain"}
