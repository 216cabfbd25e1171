"""Suites: uploads and pastes refused with every problem on its line, good JSONL and CSV accepted, the
shipped suites present and valid, and who may see, share and delete a suite."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from llmcore import eval_suites
from playground.evaluate.models import Suite

pytestmark = pytest.mark.django_db
GOOD_JSONL = (
    '{"input": "What is 2 + 2?", "references": ["4", "four"], "tags": ["math"]}\n'
    '{"input": "Capital of Italy?", "reference": "Rome", "rubric": "One word."}\n'
)
GOOD_CSV = 'input,references,tags\n"What is 2 + 2?",4||four,"math,easy"\nCapital of Italy?,Rome,geography\n'


def settings_for(**extra: object) -> dict[str, object]:
    return {"name": "Mine", "task": "qa", "metrics": ["exact_match", "token_f1"], **extra}


def upload(client: Client, name: str, data: bytes | str, **extra: object):
    raw = data.encode() if isinstance(data, str) else data
    return client.post(
        reverse("evaluate:list"), {**settings_for(**extra), "file": SimpleUploadedFile(name, raw)}
    )


@pytest.fixture
def stranger(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="mallory", password="x" * 20))
    return client


@pytest.fixture
def own_suite(client_in: Client) -> Suite:
    response = upload(client_in, "mine.jsonl", GOOD_JSONL)
    assert response.status_code == 302, response.content.decode()[-2000:]
    return Suite.objects.get(name="Mine")


def test_a_good_jsonl_upload_becomes_a_suite_with_its_items(client_in: Client, own_suite: Suite) -> None:
    items = list(own_suite.items.all())
    assert [i.references for i in items] == [["4", "four"], ["Rome"]]
    assert items[0].tags == ["math"]
    assert items[1].rubric == "One word."
    page = client_in.get(reverse("evaluate:suite", args=[own_suite.pk])).content.decode()
    assert "Capital of Italy?" in page
    assert "four" in page
    assert 'id="run-suite"' in page, "a suite can be run on models from its page"


def test_a_good_csv_upload_splits_references_and_tags(client_in: Client) -> None:
    response = upload(client_in, "mine.csv", GOOD_CSV)
    assert response.status_code == 302
    items = list(Suite.objects.get(name="Mine").items.all())
    assert items[0].references == ["4", "four"]
    assert items[0].tags == ["math", "easy"]
    assert items[1].references == ["Rome"]


def test_pasted_jsonl_makes_a_suite_through_the_same_validator(client_in: Client) -> None:
    response = client_in.post(reverse("evaluate:list"), {**settings_for(), "text": GOOD_JSONL})
    assert response.status_code == 302
    bad = client_in.post(reverse("evaluate:list"), {**settings_for(name="Bad"), "text": '{"input": "x"}\n{'})
    assert bad.status_code == 400
    page = bad.content.decode()
    assert "line 1: an item needs" in page
    assert "line 2: not valid JSON" in page
    assert 'id="errors-text"' in page  # beside the textarea


def test_every_bad_line_is_refused_at_once_with_its_number(client_in: Client) -> None:
    data = '{"input": "fine", "reference": "a"}\n{not json\n{"reference": "no input"}\n[1, 2]\n'
    response = upload(client_in, "bad.jsonl", data)
    assert response.status_code == 400
    page = response.content.decode()
    assert "line 2: not valid JSON" in page
    assert "line 3: &#x27;input&#x27; is missing" in page
    assert "line 4: an item must be a JSON object" in page
    assert 'id="errors-file"' in page
    assert not Suite.objects.filter(name="Mine").exists()


def test_a_csv_row_without_input_is_refused_on_its_line(client_in: Client) -> None:
    response = upload(client_in, "bad.csv", "input,reference\nok,yes\n,missing\n")
    assert response.status_code == 400
    assert "line 3: &#x27;input&#x27; is missing" in response.content.decode()


def test_too_many_items_are_refused_not_cut(client_in: Client, settings) -> None:
    settings.EVAL_SUITE_MAX_ITEMS = 3
    data = "".join(json.dumps({"input": f"q{i}", "reference": "a"}) + "\n" for i in range(5))
    response = upload(client_in, "many.jsonl", data)
    assert response.status_code == 400
    assert "line 4: too many items: the limit is 3" in response.content.decode()
    assert not Suite.objects.filter(name="Mine").exists()


def test_a_file_over_the_byte_limit_is_refused(client_in: Client, settings) -> None:
    settings.EVAL_SUITE_MAX_BYTES = 100
    response = upload(client_in, "big.jsonl", GOOD_JSONL * 3)
    assert response.status_code == 400
    assert "the limit is 100 bytes" in response.content.decode()


def test_an_input_over_its_character_limit_is_refused(client_in: Client) -> None:
    long = "x" * (eval_suites.MAX_INPUT_CHARS + 1)
    response = upload(client_in, "long.jsonl", json.dumps({"input": long, "reference": "a"}))
    assert response.status_code == 400
    assert f"longer than {eval_suites.MAX_INPUT_CHARS:,} characters" in response.content.decode()


def test_an_unknown_metric_is_refused_beside_the_metrics(client_in: Client) -> None:
    response = upload(client_in, "m.jsonl", GOOD_JSONL, metrics=["exact_match", "vibes"])
    assert response.status_code == 400
    assert 'id="errors-metrics"' in response.content.decode()
    assert eval_suites.settings_problems("qa", ["vibes"], [])["metrics"][0].startswith(
        "Unknown metric 'vibes'"
    )


def test_a_classification_suite_needs_labels_and_references_among_them(client_in: Client) -> None:
    data = '{"input": "Great!", "reference": "positive"}\n{"input": "Meh", "reference": "so-so"}\n'
    response = upload(client_in, "c.jsonl", data, task="classification", metrics=["accuracy"])
    assert response.status_code == 400
    assert 'id="errors-labels"' in response.content.decode()
    response = upload(
        client_in, "c.jsonl", data, task="classification", metrics=["accuracy"], labels="positive, negative"
    )
    assert response.status_code == 400
    assert "line 2: the reference &#x27;so-so&#x27; is not one of the labels" in response.content.decode()


def test_checks_must_be_objects_with_a_check_name(client_in: Client) -> None:
    data = (
        '{"input": "Be brief.", "checks": [{"check": "max_words", "n": 5}]}\n{"input": "x", "checks": [5]}\n'
    )
    response = upload(client_in, "i.jsonl", data, task="instructions", metrics=["checks"])
    assert response.status_code == 400
    assert "line 2: check 1 must be an object with a string" in response.content.decode()
    data = '{"input": "Be brief.", "checks": [{"check": "max_words"}, {"check": "rhyme"}]}\n'
    page = upload(client_in, "i.jsonl", data, task="instructions", metrics=["checks"]).content.decode()
    assert "line 1: check 1: Check &quot;max_words&quot; needs &quot;n&quot;." in page
    assert "line 1: check 2: There is no check &quot;rhyme&quot;" in page


def test_the_shipped_suites_are_all_present_and_valid(client_in: Client) -> None:
    shipped = {s.name: s for s in Suite.objects.filter(shipped=True, owner=None)}
    assert set(shipped) == {s.name for s in eval_suites.SHIPPED_SUITES}
    assert {s.task for s in shipped.values()} == set(eval_suites.TASKS)
    for spec in eval_suites.SHIPPED_SUITES:
        parsed = eval_suites.load_shipped(spec)
        assert parsed.ok, parsed.errors
        assert 10 <= len(parsed.items) <= 15
        assert shipped[spec.name].items.count() == len(parsed.items)
        assert not eval_suites.settings_problems(spec.task, list(spec.metrics), list(spec.labels))
    assert all(i.checks for i in shipped["Follow the format"].items.all())
    page = client_in.get(reverse("evaluate:list")).content.decode()
    assert all(name in page for name in shipped)
    assert "not built yet" in page
    words = client_in.get(reverse("evaluate:suite", args=[shipped["Follow the format"].pk])).content.decode()
    assert "At most 20 words." in words


def test_a_private_suite_is_a_404_to_a_stranger(own_suite: Suite, stranger: Client) -> None:
    assert stranger.get(reverse("evaluate:suite", args=[own_suite.pk])).status_code == 404
    assert "Mine" not in stranger.get(reverse("evaluate:list")).content.decode()


def test_a_shared_suite_is_seen_by_others_but_only_its_owner_changes_it(
    client_in: Client, own_suite: Suite, stranger: Client
) -> None:
    response = client_in.post(reverse("evaluate:share", args=[own_suite.pk]), {"shared": "1"})
    assert response.status_code == 302
    assert stranger.get(reverse("evaluate:suite", args=[own_suite.pk])).status_code == 200
    assert "Mine" in stranger.get(reverse("evaluate:list")).content.decode()
    assert stranger.post(reverse("evaluate:share", args=[own_suite.pk]), {"shared": "0"}).status_code == 404
    assert stranger.post(reverse("evaluate:delete", args=[own_suite.pk])).status_code == 404
    own_suite.refresh_from_db()
    assert own_suite.shared
    htmx = client_in.post(
        reverse("evaluate:share", args=[own_suite.pk]), {"shared": "0"}, headers={"HX-Request": "true"}
    )
    assert 'data-access="private"' in htmx.content.decode()
    assert stranger.get(reverse("evaluate:suite", args=[own_suite.pk])).status_code == 404


def test_the_owner_deletes_after_confirming(client_in: Client, own_suite: Suite) -> None:
    confirm = client_in.get(reverse("evaluate:delete", args=[own_suite.pk]))
    assert confirm.status_code == 200
    assert b"cannot be undone" in confirm.content
    assert Suite.objects.filter(pk=own_suite.pk).exists()  # a GET never deletes
    response = client_in.post(reverse("evaluate:delete", args=[own_suite.pk]))
    assert response.status_code == 302
    assert not Suite.objects.filter(pk=own_suite.pk).exists()


def test_shipped_suites_cannot_be_deleted_or_unshared(client_in: Client) -> None:
    shipped = Suite.objects.filter(shipped=True).first()
    assert client_in.post(reverse("evaluate:delete", args=[shipped.pk])).status_code == 404
    assert client_in.post(reverse("evaluate:share", args=[shipped.pk]), {"shared": "0"}).status_code == 404


def test_posts_without_a_csrf_token_are_refused(user, own_suite: Suite) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    for url in (reverse("evaluate:list"), reverse("evaluate:share", args=[own_suite.pk]),
                reverse("evaluate:delete", args=[own_suite.pk])):  # fmt: skip
        assert client.post(url, {**settings_for(), "text": GOOD_JSONL, "shared": "1"}).status_code == 403
    assert Suite.objects.filter(pk=own_suite.pk, shared=False).exists()
    assert Suite.objects.filter(name="Mine").count() == 1
