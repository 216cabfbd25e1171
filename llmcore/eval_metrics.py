"""Metrics for evaluation runs: a score per item, a corpus score with a bootstrap interval, per-tag scores.

One entry point, `score(name, predictions, references_list, **opts) -> MetricResult`, over parallel lists:
each item has one prediction and a list of references (an item without references is skipped: its
per-item score is None and it counts nowhere). `METRICS` names them:

- "exact_match", "token_f1": SQuAD's answer normalization (lowercase; punctuation, the articles a/an/the and
  extra whitespace removed), then 1/0 for equality, or the F1 of the bag of tokens; the best reference counts.
- "bleu", "chrf": sacrebleu with its defaults (BLEU: 13a tokenization, exponential smoothing; chrF2: character
  6-grams, beta 2). The value is the corpus score, sacrebleu's 0-100 divided by 100, so every metric here is
  0-1. All of an item's references are used, as sacrebleu does. Per item: the sentence score (BLEU with
  effective order, as sacrebleu recommends for single sentences), for the per-item view only: a corpus
  BLEU is not the mean of sentence BLEUs.
- "rouge": rouge-score's rouge1, rouge2 and rougeL F-measures with Porter stemming, the best reference per
  item, averaged over items. The value (and per_item) is rougeL; details holds all three with intervals.
- "accuracy": classification. The gold label is the item's first reference; labels and predictions are
  compared after the same normalization. details["confusion"] is the per-class confusion matrix, with an
  "(other)" column for predictions that are none of the labels.
- "checks": IFEval-style instruction following (llmcore.eval_checks). opts["checks"] gives each item's list
  of check specs; an item scores 1 only when all its checks pass (strict), and details gives each check's
  pass rate. References are not used.

Intervals are percentile bootstrap intervals (`bootstrap_ci`, numpy, seeded so a run is reproducible):
per-item metrics resample item scores; BLEU and chrF resample items and recompute the corpus statistic
from sacrebleu's per-item sufficient statistics. `score(..., tags=items_tags)` adds details["by_tag"], the
same statistic with its own interval over the items of each tag (an axis such as "reasoning" or "long").
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from llmcore import eval_checks

OTHER = "(other)"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(frozen=True)
class MetricResult:
    """A metric over a run: value with its interval (None when no item could be scored), the score of every
    item in order (None where an item was skipped) and metric-specific details, all JSON-ready."""

    name: str
    value: float | None
    low: float | None
    high: float | None
    per_item: list[float | None]
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- SQuAD-style answers -------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lowercase, drop ASCII punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals some normalized reference, else 0.0."""
    answer = normalize_answer(prediction)
    return float(any(answer == normalize_answer(ref) for ref in references))


def _f1(prediction_tokens: list[str], reference_tokens: list[str]) -> float:
    if not prediction_tokens or not reference_tokens:
        return float(prediction_tokens == reference_tokens)  # both empty agree; one empty shares nothing
    same = sum((Counter(prediction_tokens) & Counter(reference_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction_tokens), same / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD's token F1 of the normalized answers, the best over the references."""
    tokens = normalize_answer(prediction).split()
    return max((_f1(tokens, normalize_answer(ref).split()) for ref in references), default=0.0)


# --- Bootstrap ---------------------------------------------------------------------------------------


def _mean(values: Any) -> float:
    return float(np.mean(values))


def bootstrap_ci(
    values: Sequence[Any] | np.ndarray,
    statistic: Callable[[Any], float] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """(point, low, high): the statistic over all values and its percentile bootstrap interval.

    `values` are item scores (statistic None: their mean) or anything per item that `statistic` turns into
    one number: it receives a resample, a numpy array indexed by item when values is one (e.g. per-item
    sufficient statistics, rows summed for a corpus BLEU), else a list. The same seed gives the same
    interval."""
    n = len(values)
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    statistic = statistic or _mean
    array = values if isinstance(values, np.ndarray) else None
    if array is None and statistic is _mean:
        array = np.asarray(values, dtype=float)
    point = float(statistic(array if array is not None else list(values)))
    indices = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    if statistic is _mean and array is not None and array.ndim == 1:
        samples = array[indices].mean(axis=1)
    elif array is not None:
        samples = np.array([statistic(array[row]) for row in indices])
    else:
        samples = np.array([statistic([values[i] for i in row]) for row in indices])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return point, float(low), float(high)


def by_tag(
    items_tags: Sequence[Sequence[str]],
    scores: Sequence[Any] | np.ndarray,
    statistic: Callable[[Any], float] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, float | int]]:
    """Per tag, {"value", "low", "high", "n"} over the items that carry it, with its own bootstrap
    interval; items whose score is None are left out. Tags come sorted."""
    tags = sorted({tag for item_tags in items_tags for tag in item_tags})
    result: dict[str, dict[str, float | int]] = {}
    for tag in tags:
        rows = [i for i, t in enumerate(items_tags) if tag in t and scores[i] is not None]
        if not rows:
            continue
        subset = scores[rows] if isinstance(scores, np.ndarray) else [scores[i] for i in rows]
        point, low, high = bootstrap_ci(subset, statistic, n_resamples, seed, confidence)
        result[tag] = {"value": point, "low": low, "high": high, "n": len(rows)}
    return result


# --- Scoring -----------------------------------------------------------------------------------------


def _scored(items: Sequence[Any]) -> list[int]:
    return [i for i, item in enumerate(items) if item is not None]


def _per_item_result(
    name: str, per_item: list[float | None], opts: dict[str, Any], details: dict[str, Any] | None = None
) -> MetricResult:
    """Mean of item scores with an interval, plus by_tag when tags are given."""
    details = dict(details or {})
    kept = [v for v in per_item if v is not None]
    details["n"] = len(kept)
    boot = {k: opts[k] for k in ("n_resamples", "seed", "confidence") if k in opts}
    if opts.get("tags") is not None:
        details["by_tag"] = by_tag(opts["tags"], per_item, **boot)
    if not kept:
        return MetricResult(name, None, None, None, per_item, details)
    point, low, high = bootstrap_ci(kept, **boot)
    return MetricResult(name, point, low, high, per_item, details)


def _item_scores(
    fn: Callable[[str, Sequence[str]], float], predictions: Sequence[str], references_list: Sequence[Any]
) -> list[float | None]:
    return [fn(p, refs) if refs else None for p, refs in zip(predictions, references_list, strict=True)]


@lru_cache(maxsize=1)
def _sacrebleu_metrics() -> dict[str, tuple[Any, Any]]:
    """For each corpus metric, (the corpus scorer, the sentence scorer), sacrebleu's defaults."""
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": (BLEU(), BLEU(effective_order=True)), "chrf": (CHRF(), CHRF())}


def _corpus(
    name: str, predictions: Sequence[str], references_list: Sequence[Any], **opts: Any
) -> MetricResult:
    """BLEU or chrF: per-item sufficient statistics (sacrebleu's own, the ones its paired bootstrap
    resamples), summed for the corpus score and for every resample, so intervals cost no re-tokenizing."""
    corpus_metric, sentence_metric = _sacrebleu_metrics()[name]
    per_item: list[float | None] = [None] * len(predictions)
    rows = []
    for i, (prediction, refs) in enumerate(zip(predictions, references_list, strict=True)):
        if not refs:
            continue
        rows.append(corpus_metric._extract_corpus_statistics([prediction], [[r] for r in refs])[0])
        per_item[i] = min(1.0, sentence_metric.sentence_score(prediction, list(refs)).score / 100)

    def statistic(stats: np.ndarray) -> float:
        # min: sacrebleu's 100 can come out a rounding error above it
        return min(1.0, float(corpus_metric._compute_score_from_stats(stats.sum(axis=0)).score) / 100)

    details: dict[str, Any] = {"n": len(rows), "signature": str(corpus_metric.get_signature())}
    boot = {k: opts[k] for k in ("n_resamples", "seed", "confidence") if k in opts}
    if not rows:
        return MetricResult(name, None, None, None, per_item, details)
    stats = np.array(rows, dtype=float)
    if opts.get("tags") is not None:
        kept = _scored(per_item)
        tags = [opts["tags"][i] for i in kept]
        details["by_tag"] = by_tag(tags, stats, statistic, **boot)
    point, low, high = bootstrap_ci(stats, statistic, **boot)
    return MetricResult(name, point, low, high, per_item, details)


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    # Porter stemming is code in nltk, no data download; rougeLsum (which would need punkt) is not used.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_scores(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """rouge1/rouge2/rougeL F-measures of one prediction, the best reference for each."""
    scorer = _rouge_scorer()
    scores = [scorer.score(ref, prediction) for ref in references]  # score(target, prediction)
    return {t: max(s[t].fmeasure for s in scores) for t in ROUGE_TYPES}


def _rouge(
    name: str, predictions: Sequence[str], references_list: Sequence[Any], **opts: Any
) -> MetricResult:
    items = [
        rouge_scores(p, refs) if refs else None for p, refs in zip(predictions, references_list, strict=True)
    ]
    details: dict[str, Any] = {}
    for rouge_type in ROUGE_TYPES:
        part = _per_item_result(rouge_type, [s[rouge_type] if s else None for s in items], opts)
        details[rouge_type] = {"value": part.value, "low": part.low, "high": part.high, **part.details}
    main = details["rougeL"]
    per_item = [s["rougeL"] if s else None for s in items]
    return MetricResult(name, main["value"], main["low"], main["high"], per_item, details)


def confusion_matrix(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """{"labels", "columns", "matrix"}: matrix[i][j] counts items of gold label i predicted as column j;
    the columns are the labels and then "(other)" for a prediction that is none of them. Labels are
    compared normalized and shown as given."""
    shown = {normalize_answer(label): label for label in reversed(labels)}
    names = list(dict.fromkeys(normalize_answer(label) for label in labels))
    column = {name: j for j, name in enumerate(names)}
    matrix = [[0] * (len(names) + 1) for _ in names]
    for g, p in zip(gold, predicted, strict=True):
        matrix[column[normalize_answer(g)]][column.get(normalize_answer(p), len(names))] += 1
    return {
        "labels": [shown[n] for n in names],
        "columns": [shown[n] for n in names] + [OTHER],
        "matrix": matrix,
    }


def _accuracy(
    name: str, predictions: Sequence[str], references_list: Sequence[Any], **opts: Any
) -> MetricResult:
    """opts["labels"] fixes the label set and order; by default, the gold labels in order of first use."""
    kept = [i for i, refs in enumerate(references_list) if refs]
    gold = [references_list[i][0] for i in kept]
    labels = list(opts.get("labels") or []) + gold  # a gold label missing from opts["labels"] gets a row
    per_item = _item_scores(lambda p, refs: exact_match(p, refs[:1]), predictions, references_list)
    details = {"confusion": confusion_matrix(gold, [predictions[i] for i in kept], labels)}
    return _per_item_result(name, per_item, opts, details)


def _checks(name: str, predictions: Sequence[str], references_list: Any = None, **opts: Any) -> MetricResult:
    """opts["checks"]: one list of check specs per item (an empty list skips the item)."""
    specs_list = opts.get("checks") or [[] for _ in predictions]
    results = [
        eval_checks.run_checks(p, specs) if specs else None
        for p, specs in zip(predictions, specs_list, strict=True)
    ]
    tally: dict[str, list[int]] = {}
    for specs, passed in zip(specs_list, results, strict=True):
        for spec, ok in zip(specs, passed or [], strict=True):
            counts = tally.setdefault(spec["check"], [0, 0])
            counts[0] += ok
            counts[1] += 1
    rates = {check: {"passed": p, "total": t, "rate": p / t} for check, (p, t) in sorted(tally.items())}
    per_item = [None if r is None else float(all(r)) for r in results]
    return _per_item_result(name, per_item, opts, {"per_check": rates, "results": results})


def _per_item_metric(fn: Callable[[str, Sequence[str]], float]) -> Callable[..., MetricResult]:
    def metric(
        name: str, predictions: Sequence[str], references_list: Sequence[Any], **opts: Any
    ) -> MetricResult:
        return _per_item_result(name, _item_scores(fn, predictions, references_list), opts)

    return metric


METRICS: dict[str, Callable[..., MetricResult]] = {
    "exact_match": _per_item_metric(exact_match),
    "token_f1": _per_item_metric(token_f1),
    "bleu": _corpus,
    "chrf": _corpus,
    "rouge": _rouge,
    "accuracy": _accuracy,
    "checks": _checks,
}


def score(
    metric_name: str,
    predictions: Sequence[str],
    references_list: Sequence[Sequence[str]] | None = None,
    **opts: Any,
) -> MetricResult:
    """Score a run's predictions with one metric of METRICS. opts: tags (a list of tags per item), seed,
    n_resamples, confidence (the bootstrap), labels ("accuracy"), checks ("checks")."""
    if metric_name not in METRICS:
        raise ValueError(f'There is no metric "{metric_name}"; the metrics are: {", ".join(METRICS)}.')
    if references_list is None:
        references_list = [[] for _ in predictions]
    if len(references_list) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(references_list)} reference lists")
    return METRICS[metric_name](metric_name, predictions, references_list, **opts)
