"""Suites: make one from an upload or a paste (validated by llmcore.eval_suites), find the suites a user
may see, share or delete one's own, and keep the shipped suites in the database in step with their files."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet

from llmcore import eval_checks, eval_suites
from llmcore.eval_suites import LABELLED_TASKS, METRICS, REFERENCE_SEPARATOR, TASKS, SuiteError
from playground.core.services import PlaygroundError
from playground.evaluate.models import Suite, SuiteItem

__all__ = ["LABELLED_TASKS", "METRICS", "REFERENCE_SEPARATOR", "TASKS", "SuiteError"]
SUFFIXES = (".jsonl", ".csv")


class SuiteNotFound(PlaygroundError):
    status = 404


class SuiteRefused(PlaygroundError):
    """The suite is not made: its file's line-numbered errors, and its settings' errors by field."""

    def __init__(self, errors: list[SuiteError], fields: dict[str, list[str]] | None = None) -> None:
        super().__init__("The suite was not added: " + "; ".join(map(str, errors[:3])))
        self.errors = errors
        self.fields = fields or {}


def limits() -> dict[str, int]:
    return {
        "bytes": settings.EVAL_SUITE_MAX_BYTES,
        "items": settings.EVAL_SUITE_MAX_ITEMS,
        "input_chars": eval_suites.MAX_INPUT_CHARS,
        "reference_chars": eval_suites.MAX_REFERENCE_CHARS,
    }


def visible_suites(user: Any) -> QuerySet[Suite]:
    """Shipped suites, shared ones and the user's own, with their item counts."""
    return (
        Suite.objects.filter(Q(shipped=True) | Q(shared=True) | Q(owner=user))
        .select_related("owner")
        .annotate(item_count=Count("items"))
    )


def get_visible_suite(user: Any, suite_id: int) -> Suite:
    """The suite, or SuiteNotFound (a 404) for one the user may not see: it is never shown to them."""
    suite = visible_suites(user).filter(pk=suite_id).first()
    if suite is None:
        raise SuiteNotFound("No such suite.")
    return suite


def get_own_suite(user: Any, suite_id: int) -> Suite:
    """The user's own suite; another's (even a shared or shipped one) answers as if it did not exist."""
    suite = Suite.objects.filter(pk=suite_id, owner=user, shipped=False).first()
    if suite is None:
        raise SuiteNotFound("No such suite of yours.")
    return suite


def settings_problems(task: str, metrics: list[str], labels: list[str]) -> dict[str, list[str]]:
    return eval_suites.settings_problems(task, metrics, labels)


def parse_labels(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def create_suite(
    owner: Any,
    data: bytes,
    filename: str,
    *,
    name: str,
    task: str,
    metrics: list[str],
    labels: list[str],
    description: str = "",
) -> Suite:
    """Validate the file against the suite's settings and save it with its items, or raise SuiteRefused
    with every problem at once."""
    fields = settings_problems(task, metrics, labels)
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in SUFFIXES:
        raise SuiteRefused([SuiteError(0, f"Use a {' or '.join(SUFFIXES)} file, not {suffix or 'none'}.")])
    parsed = eval_suites.parse_suite(
        data,
        filename,
        labels=labels if task in LABELLED_TASKS else (),
        need_checks="checks" in metrics,
        max_bytes=settings.EVAL_SUITE_MAX_BYTES,
        max_items=settings.EVAL_SUITE_MAX_ITEMS,
    )
    if parsed.errors or fields:
        raise SuiteRefused(parsed.errors, fields)
    with transaction.atomic():
        suite = Suite.objects.create(
            owner=owner, name=name, description=description, task=task, metrics=metrics, labels=labels
        )
        save_items(suite, parsed.items)
    return suite


def save_items(suite: Suite, items: list[eval_suites.SuiteItemSpec], item_model: Any = SuiteItem) -> None:
    item_model.objects.bulk_create(
        item_model(
            suite=suite,
            index=i,
            input=item.input,
            references=item.references,
            tags=item.tags,
            rubric=item.rubric,
            checks=item.checks,
        )
        for i, item in enumerate(items)
    )


def set_shared(user: Any, suite_id: int, shared: bool) -> Suite:
    suite = get_own_suite(user, suite_id)
    suite.shared = shared
    suite.save(update_fields=["shared"])
    return get_visible_suite(user, suite.pk)


def delete_suite(user: Any, suite_id: int) -> None:
    get_own_suite(user, suite_id).delete()


def ensure_shipped_suites(suite_model: Any = Suite, item_model: Any = SuiteItem) -> int:
    """Make the database's shipped suites match llmcore's files (idempotent: run by the data migrations
    with their historical models). A shipped file that does not validate is a bug: it raises."""
    for shipped in eval_suites.SHIPPED_SUITES:
        parsed = eval_suites.load_shipped(shipped)
        if not parsed.ok:
            raise ValueError(f"Shipped suite {shipped.file} does not validate: {parsed.errors}")
        suite, _ = suite_model.objects.update_or_create(
            shipped=True,
            name=shipped.name,
            defaults={
                "owner": None,
                "description": shipped.description,
                "task": shipped.task,
                "metrics": list(shipped.metrics),
                "labels": list(shipped.labels),
                "shared": True,
            },
        )
        item_model.objects.filter(suite=suite).delete()
        save_items(suite, parsed.items, item_model)
    names = [s.name for s in eval_suites.SHIPPED_SUITES]
    suite_model.objects.filter(shipped=True).exclude(name__in=names).delete()
    return len(names)


def check_in_words(spec: dict[str, Any]) -> str:
    """A check as a person reads it: "At most 20 words." (its name and parameters if the check code no
    longer knows it)."""
    try:
        return eval_checks.describe(spec)
    except ValueError:
        pass
    args = ", ".join(f"{key} = {value!r}" for key, value in spec.items() if key != "check")
    name = str(spec.get("check", "")).replace("_", " ")
    return f"{name}: {args}" if args else name
