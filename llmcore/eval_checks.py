"""Verifiable instruction checks, IFEval-style: rules about an answer's form that code can decide.

A suite item asks for something like "answer in under 20 words" or "use JSON", and carries the checks as
specs, plain dicts such as `{"check": "max_words", "n": 20}`. Each check is a pure function
(response, **params) -> bool, registered in `CHECKS` with the parameters it takes and a sentence that says
what it asks, so a results page can print "At most 20 words." beside a pass or a fail.

- `check_problems(spec)`: every problem with one spec, each as a sentence (unknown check, missing, extra or
  wrong-typed parameters); an empty list means the spec can run. Suites validate with it when uploaded.
- `run_checks(response, specs)`: one bool per spec, in order; a spec with problems raises ValueError.
- `describe(spec)`: the human sentence for one spec.

How text is counted (approximations, stated so a failed check can be understood):
- words are runs of letters and digits, with inner apostrophes and hyphens kept ("don't", "well-known" = 1);
- sentences end at ".", "!" or "?" followed by whitespace or the end; a piece without a word is not one;
- bullets are lines that start, after indentation, with "- " or "* ";
- text comparisons (starts_with, ends_with, contains, not_contains) ignore case and surrounding whitespace,
  and contains/not_contains match whole words or phrases only ("cat" is not found in "concatenate");
- json accepts the answer wrapped in one Markdown code fence (```json ... ```), as IFEval does, since models
  that answer with JSON so often fence it; anything else around the JSON fails;
- lowercase/uppercase need at least one letter, and no letter of the other case.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_WORD = re.compile(r"\w+(?:['’-]\w+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class Param:
    """One parameter of a check: its kind ("count", "text" or "words"), and whether it must be given.
    A count is an int of at least `minimum`; a text a non-empty string; words a non-empty list of them."""

    kind: str
    required: bool = True
    minimum: int = 1


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[..., bool]
    sentence: str  # formatted with the spec's parameters
    params: Mapping[str, Param] = field(default_factory=dict)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if _WORD.search(s)]


def _phrase_in(phrase: str, text: str) -> bool:
    pattern = r"(?<!\w)" + re.escape(phrase.strip()) + r"(?!\w)"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def max_words(response: str, n: int) -> bool:
    return len(words(response)) <= n


def min_words(response: str, n: int) -> bool:
    return len(words(response)) >= n


def no_commas(response: str) -> bool:
    return "," not in response and "，" not in response


def is_json(response: str, keys: Sequence[str] | None = None) -> bool:
    text = response.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = jsonlib.loads(text)
    except ValueError:
        return False
    if keys:
        return isinstance(value, dict) and all(key in value for key in keys)
    return True


def lowercase(response: str) -> bool:
    return response.islower()


def uppercase(response: str) -> bool:
    return response.isupper()


def starts_with(response: str, text: str) -> bool:
    return response.strip().lower().startswith(text.strip().lower())


def ends_with(response: str, text: str) -> bool:
    return response.strip().lower().endswith(text.strip().lower())


def contains(response: str, words: Sequence[str]) -> bool:
    return all(_phrase_in(word, response) for word in words)


def not_contains(response: str, words: Sequence[str]) -> bool:
    return not any(_phrase_in(word, response) for word in words)


def bullet_count(response: str, n: int) -> bool:
    bullets = [line for line in response.splitlines() if line.lstrip().startswith(("- ", "* "))]
    return len(bullets) == n


def max_sentences(response: str, n: int) -> bool:
    return len(sentences(response)) <= n


_COUNT = Param("count")
_WORDS = Param("words")
_TEXT = Param("text")

CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check("max_words", max_words, "At most {n} words.", {"n": _COUNT}),
        Check("min_words", min_words, "At least {n} words.", {"n": _COUNT}),
        Check("no_commas", no_commas, "No commas."),
        Check("json", is_json, "The whole answer is JSON{keys_clause}.", {"keys": Param("words", False)}),
        Check("lowercase", lowercase, "All in lowercase letters."),
        Check("uppercase", uppercase, "All in capital letters."),
        Check("starts_with", starts_with, 'Starts with "{text}".', {"text": _TEXT}),
        Check("ends_with", ends_with, 'Ends with "{text}".', {"text": _TEXT}),
        Check("contains", contains, "Uses the words {words_list}.", {"words": _WORDS}),
        Check("not_contains", not_contains, "Never uses the words {words_list}.", {"words": _WORDS}),
        Check("bullet_count", bullet_count, "Exactly {n} bullet points.", {"n": Param("count", minimum=0)}),
        Check("max_sentences", max_sentences, "At most {n} sentences.", {"n": _COUNT}),
    )
}


def _param_problem(check: str, name: str, param: Param, value: Any) -> str | None:
    where = f'The "{name}" of check "{check}"'
    if param.kind == "count":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{where} must be a whole number, not {value!r}."
        if value < param.minimum:
            return f"{where} must be at least {param.minimum}, not {value}."
    elif param.kind == "text":
        if not isinstance(value, str) or not value.strip():
            return f"{where} must be a non-empty text, not {value!r}."
    elif not (isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value)):
        return f"{where} must be a non-empty list of non-empty texts, not {value!r}."
    return None


def check_problems(spec: Any) -> list[str]:
    """Every problem with one check spec, each a sentence naming it; [] when the spec can run."""
    if not isinstance(spec, dict):
        return [f'A check must be an object like {{"check": "max_words", "n": 20}}, not {spec!r}.']
    name = spec.get("check")
    if not isinstance(name, str):
        return ['A check needs a "check" naming it, for example {"check": "no_commas"}.']
    check = CHECKS.get(name)
    if check is None:
        return [f'There is no check "{name}"; the checks are: {", ".join(CHECKS)}.']
    problems = []
    for param_name, param in check.params.items():
        if param_name not in spec:
            if param.required:
                problems.append(f'Check "{name}" needs "{param_name}".')
            continue
        problem = _param_problem(name, param_name, param, spec[param_name])
        if problem:
            problems.append(problem)
    for extra in sorted(set(spec) - set(check.params) - {"check"}):
        takes = ", ".join(f'"{p}"' for p in check.params) or "no parameters"
        problems.append(f'Check "{name}" has no parameter "{extra}" (it takes {takes}).')
    return problems


def _valid(spec: Any) -> tuple[Check, dict[str, Any]]:
    problems = check_problems(spec)
    if problems:
        raise ValueError(" ".join(problems))
    return CHECKS[spec["check"]], {k: v for k, v in spec.items() if k != "check"}


def describe(spec: dict[str, Any]) -> str:
    """The sentence a person reads for a spec, e.g. "At most 20 words."."""
    check, params = _valid(spec)
    listed = ", ".join(f'"{w}"' for w in params.get("words", []))
    keys = ", ".join(f'"{k}"' for k in params.get("keys") or [])
    return check.sentence.format(
        words_list=listed, keys_clause=f" with the keys {keys}" if keys else "", **params
    )


def run_checks(response: str, specs: Sequence[dict[str, Any]]) -> list[bool]:
    """One pass/fail per spec, in order. A spec with problems raises ValueError (validate on upload)."""
    results = []
    for spec in specs:
        check, params = _valid(spec)
        results.append(bool(check.run(response, **params)))
    return results
