from __future__ import annotations

import pytest

from llmcore.eval_checks import CHECKS, check_problems, describe, run_checks

# (spec, a response that passes, a response that fails)
CASES = [
    ({"check": "max_words", "n": 3}, "Don't panic, friend.", "one two three four"),
    ({"check": "min_words", "n": 3}, "a well-known fact here", "well-known fact"),
    ({"check": "no_commas"}, "No commas here.", "Yes, there is one."),
    ({"check": "json"}, '{"a": 1}', 'Sure! {"a": 1}'),
    ({"check": "json"}, '```json\n{"a": [1, 2]}\n```', "{'a': 1}"),
    ({"check": "json", "keys": ["name", "age"]}, '{"name": "Ada", "age": 36}', '{"name": "Ada"}'),
    ({"check": "json", "keys": ["name"]}, '{"name": null}', '["name"]'),
    ({"check": "lowercase"}, "all small, 42 too.", "almost All small"),
    ({"check": "lowercase"}, "yes", "123"),
    ({"check": "uppercase"}, "LOUD NOISES!", "LOUD noises"),
    ({"check": "starts_with", "text": "Dear Sam"}, "  dear sam, hello", "Hello, dear Sam"),
    ({"check": "ends_with", "text": "Is there anything else?"}, "Done. is there anything else?\n", "Done."),
    ({"check": "contains", "words": ["cat", "red hat"]}, "The Cat wore a red hat.", "The cat wore a hat."),
    ({"check": "contains", "words": ["cat"]}, "cat!", "concatenate"),
    ({"check": "not_contains", "words": ["sorry"]}, "Here it is, unsorryish.", "I'm SORRY, no."),
    ({"check": "bullet_count", "n": 2}, "Intro\n- one\n  * two\nend", "- one\n- two\n- three"),
    ({"check": "bullet_count", "n": 0}, "no bullets -here", "* one"),
    ({"check": "max_sentences", "n": 2}, "One. Two!", "One. Two? Three."),
    ({"check": "max_sentences", "n": 1}, "Pi is 3.14 exactly", "Yes. No."),
]


@pytest.mark.parametrize(("spec", "good", "bad"), CASES)
def test_each_check_passes_and_fails(spec, good, bad) -> None:
    assert check_problems(spec) == []
    assert run_checks(good, [spec]) == [True]
    assert run_checks(bad, [spec]) == [False]


def test_every_registered_check_is_exercised() -> None:
    assert {spec["check"] for spec, _, _ in CASES} == set(CHECKS)


def test_run_checks_keeps_order() -> None:
    specs = [{"check": "no_commas"}, {"check": "max_words", "n": 1}, {"check": "lowercase"}]
    assert run_checks("hello there", specs) == [True, False, True]


def test_each_check_has_a_sentence() -> None:
    assert describe({"check": "max_words", "n": 20}) == "At most 20 words."
    assert describe({"check": "contains", "words": ["a", "b"]}) == 'Uses the words "a", "b".'
    assert describe({"check": "json"}) == "The whole answer is JSON."
    assert describe({"check": "json", "keys": ["k"]}) == 'The whole answer is JSON with the keys "k".'
    for spec, _, _ in CASES:
        sentence = describe(spec)
        assert sentence.endswith(".")
        assert "{" not in sentence


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("max_words", "must be an object"),
        ({"n": 3}, 'needs a "check"'),
        ({"check": "max_letters", "n": 3}, 'no check "max_letters"'),
        ({"check": "max_words"}, 'needs "n"'),
        ({"check": "max_words", "n": "20"}, "whole number"),
        ({"check": "max_words", "n": True}, "whole number"),
        ({"check": "max_words", "n": 0}, "at least 1"),
        ({"check": "bullet_count", "n": -1}, "at least 0"),
        ({"check": "no_commas", "n": 3}, 'no parameter "n" (it takes no parameters)'),
        ({"check": "max_words", "n": 3, "m": 1}, 'no parameter "m" (it takes "n")'),
        ({"check": "starts_with", "text": "  "}, "non-empty text"),
        ({"check": "contains", "words": "cat"}, "non-empty list"),
        ({"check": "contains", "words": []}, "non-empty list"),
        ({"check": "not_contains", "words": ["ok", 3]}, "non-empty list"),
        ({"check": "json", "keys": "name"}, "non-empty list"),
    ],
)
def test_check_problems_names_each_problem(spec, fragment) -> None:
    problems = check_problems(spec)
    assert len(problems) == 1
    assert fragment in problems[0]


def test_check_problems_lists_every_problem_and_run_refuses() -> None:
    spec = {"check": "max_words", "n": "x", "extra": 1}
    assert len(check_problems(spec)) == 2
    with pytest.raises(ValueError, match="whole number"):
        run_checks("text", [spec])
