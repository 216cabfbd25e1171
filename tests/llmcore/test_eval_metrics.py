from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmcore import eval_metrics as m

# sacrebleu's README ("Using SacreBLEU from Python"): BLEU = 48.53, chrF2 = 59.73 on this corpus.
README_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]
README_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
PER_ITEM_REFS = [list(refs) for refs in zip(*README_REFS, strict=True)]


def test_the_registry_has_the_names_the_suites_use() -> None:
    assert set(m.METRICS) == {"exact_match", "token_f1", "bleu", "chrf", "rouge", "accuracy", "checks"}
    with pytest.raises(ValueError, match="no metric"):
        m.score("meteor", ["a"], [["a"]])


def test_bleu_and_chrf_match_sacrebleus_readme() -> None:
    bleu = m.score("bleu", README_SYS, PER_ITEM_REFS)
    chrf = m.score("chrf", README_SYS, PER_ITEM_REFS)
    assert round(bleu.value * 100, 2) == 48.53
    assert round(chrf.value * 100, 2) == 59.73
    assert bleu.low <= bleu.value <= bleu.high
    # Per item: sentence scores, a perfect match scores 1.
    assert bleu.per_item[0] == pytest.approx(1.0)
    assert chrf.per_item[0] == pytest.approx(1.0)
    assert all(0 <= v < 1 for v in bleu.per_item[1:])


def test_variable_reference_counts_match_sacrebleus_readme() -> None:
    # The README's second example: the first item loses one reference, BLEU = 29.44.
    refs = [["The dog had bit the man."], PER_ITEM_REFS[1], PER_ITEM_REFS[2]]
    assert round(m.score("bleu", README_SYS, refs).value * 100, 2) == 29.44


def test_rouge_matches_the_readme_example_by_hand() -> None:
    # rouge-score's README pair. Stemmed tokens: target "the quick brown fox jump over the lazi dog" (9),
    # prediction "the quick brown dog jump on the log" (8). Unigrams shared: the x2, quick, brown, dog,
    # jump = 6, so P 6/8, R 6/9; the longest common subsequence "the quick brown jump the" = 5: P 5/8, R 5/9.
    result = m.score(
        "rouge", ["The quick brown dog jumps on the log."], [["The quick brown fox jumps over the lazy dog"]]
    )

    def f(p: float, r: float) -> float:
        return 2 * p * r / (p + r)

    assert result.details["rouge1"]["value"] == pytest.approx(f(6 / 8, 6 / 9))
    assert result.value == pytest.approx(f(5 / 8, 5 / 9))  # rougeL is the headline
    # Bigrams shared: "the quick", "quick brown" = 2 of 7 and 8.
    assert result.details["rouge2"]["value"] == pytest.approx(f(2 / 7, 2 / 8))


def test_rouge_takes_the_best_reference() -> None:
    result = m.score("rouge", ["a cat sat"], [["dogs bark loudly", "a cat sat"]])
    assert result.value == pytest.approx(1.0)


def test_squad_normalization_and_scores_by_hand() -> None:
    assert m.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert m.exact_match("the eiffel tower.", ["Eiffel Tower"]) == 1.0
    assert m.exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    # "eiffel" vs "eiffel tower": P 1/1, R 1/2, F1 2/3.
    assert m.token_f1("Eiffel", ["Eiffel Tower"]) == pytest.approx(2 / 3)
    # The best reference: "paris france" vs "paris" is P 1/2 R 1 = 2/3; vs "in paris france" P 1 R 2/3 = 0.8.
    assert m.token_f1("Paris, France", ["Paris", "in Paris France"]) == pytest.approx(0.8)
    assert m.token_f1("London", ["Paris"]) == 0.0
    # Repeated tokens count once per match: "the the cat" -> "cat" after articles go.
    assert m.token_f1("cat cat", ["cat"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    result = m.score("exact_match", ["Paris", "Rome", "x"], [["paris"], ["Milan"], []])
    assert result.per_item == [1.0, 0.0, None]
    assert result.value == 0.5
    assert result.details["n"] == 2


def test_confusion_matrix_on_a_hand_case() -> None:
    predictions = ["Positive.", "negative", "positive", "I think so", "NEUTRAL"]
    gold = [["positive"], ["positive"], ["negative"], ["neutral"], ["neutral"]]
    result = m.score("accuracy", predictions, gold)
    assert result.value == pytest.approx(2 / 5)
    assert result.per_item == [1.0, 0.0, 0.0, 0.0, 1.0]
    confusion = result.details["confusion"]
    assert confusion["columns"] == ["positive", "negative", "neutral", "(other)"]
    assert confusion["matrix"] == [
        [1, 1, 0, 0],  # positive: one right, one called negative
        [1, 0, 0, 0],  # negative: called positive
        [0, 0, 1, 1],  # neutral: one right, one answer that is no label
    ]


def test_accuracy_with_a_fixed_label_order() -> None:
    result = m.score("accuracy", ["b"], [["b"]], labels=["a", "b"])
    assert result.details["confusion"]["matrix"] == [[0, 0, 0], [0, 1, 0]]
    unlisted = m.score("accuracy", ["c"], [["c"]], labels=["a"]).details["confusion"]
    assert unlisted["labels"] == ["a", "c"]
    assert unlisted["matrix"] == [[0, 0, 0], [0, 1, 0]]


def test_bootstrap_interval_contains_the_point_and_is_reproducible() -> None:
    values = np.random.default_rng(0).random(60).tolist()
    point, low, high = m.bootstrap_ci(values, seed=7)
    assert point == pytest.approx(np.mean(values))
    assert low < point < high
    assert m.bootstrap_ci(values, seed=7) == (point, low, high)
    assert m.bootstrap_ci(values, seed=8) != (point, low, high)


def test_bootstrap_interval_narrows_with_more_items() -> None:
    rng = np.random.default_rng(1)
    few = rng.random(20).tolist()
    many = rng.random(2000).tolist()
    _, low_few, high_few = m.bootstrap_ci(few)
    _, low_many, high_many = m.bootstrap_ci(many)
    assert high_many - low_many < (high_few - low_few) / 4


def test_bootstrap_over_items_recomputes_the_statistic() -> None:
    # A ratio of sums is not a mean of ratios: resampling items must recompute it.
    rows = np.array([[1, 2], [3, 4], [0, 10]], dtype=float)

    def ratio(r: np.ndarray) -> float:
        return float(r[:, 0].sum() / r[:, 1].sum())

    point, low, high = m.bootstrap_ci(rows, ratio, n_resamples=200)
    assert point == pytest.approx(4 / 16)
    assert 0 <= low <= point <= high <= 3 / 4
    # Plain lists go to the statistic as lists.
    assert m.bootstrap_ci(["a", "bb"], lambda xs: float(len("".join(xs))), n_resamples=50)[0] == 3.0
    with pytest.raises(ValueError):
        m.bootstrap_ci([])


def test_corpus_interval_resamples_items() -> None:
    result = m.score("bleu", README_SYS * 10, PER_ITEM_REFS * 10, seed=3)
    again = m.score("bleu", README_SYS * 10, PER_ITEM_REFS * 10, seed=3)
    assert round(result.value * 100, 2) == 48.53
    assert result.low < result.value < result.high
    assert (result.low, result.high) == (again.low, again.high)


def test_by_tag_scores_each_axis_with_its_own_interval() -> None:
    tags = [["short"], ["short", "math"], ["math"], []]
    scores = [1.0, 0.0, 1.0, None]
    result = m.by_tag(tags, scores)
    assert set(result) == {"math", "short"}
    assert result["short"]["value"] == 0.5
    assert result["short"]["n"] == 2
    assert result["math"]["low"] <= result["math"]["value"] <= result["math"]["high"]
    tags = [["short"], ["short"], ["math"], ["math"]]
    via_score = m.score("exact_match", ["a", "b", "a", "z"], [["a"], ["a"], ["a"], []], tags=tags)
    assert via_score.details["by_tag"]["short"]["value"] == 0.5
    assert via_score.details["by_tag"]["math"] == {"value": 1.0, "low": 1.0, "high": 1.0, "n": 1}


def test_corpus_by_tag_recomputes_the_corpus_score_per_tag() -> None:
    tags = [["x"], ["x"], ["y"]]
    result = m.score("chrf", README_SYS, PER_ITEM_REFS, tags=tags)
    alone = m.score("chrf", README_SYS[:2], PER_ITEM_REFS[:2])
    assert result.details["by_tag"]["x"]["value"] == pytest.approx(alone.value)
    assert result.details["by_tag"]["y"]["value"] == pytest.approx(result.per_item[2])


def test_checks_metric_is_strict_and_reports_pass_rates() -> None:
    checks = [
        [{"check": "max_words", "n": 3}, {"check": "no_commas"}],
        [{"check": "no_commas"}],
        [],
    ]
    result = m.score("checks", ["one two three", "yes, no", "anything"], checks=checks)
    assert result.per_item == [1.0, 0.0, None]
    assert result.value == 0.5
    assert result.details["per_check"]["no_commas"] == {"passed": 1, "total": 2, "rate": 0.5}
    assert result.details["per_check"]["max_words"]["rate"] == 1.0
    assert result.details["results"] == [[True, True], [False], None]


def test_rouge_downloads_nothing() -> None:
    # Stemming is code in nltk: scoring with the network's proxies pointed nowhere and nltk's data path
    # empty still works, and nothing is written to an nltk_data folder.
    code = (
        "import nltk; nltk.data.path[:] = []\n"
        "from llmcore.eval_metrics import score\n"
        "print(score('rouge', ['cats running'], [['a cat runs']]).value)\n"
    )
    home = Path(__file__).resolve().parents[2]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NLTK_DATA": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=home, capture_output=True, text=True, env=env, check=True
    )
    assert float(result.stdout) > 0.5
    assert "download" not in result.stderr.lower()
