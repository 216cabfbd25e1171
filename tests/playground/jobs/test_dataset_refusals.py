"""Dataset uploads that used to answer 500: a file nested fifty thousand brackets deep, as a JSON file, a
JSON line or a CSV messages column, is saved with its error on the line to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from playground.jobs.models import Dataset

pytestmark = pytest.mark.django_db
DEEP = b"[" * 50_000 + b"]" * 50_000
MESSAGE = "The JSON nests more than 64 levels deep; flatten it."


@pytest.mark.parametrize(
    ("name", "data", "line"),
    [
        ("deep.json", DEEP, 0),
        ("deep.jsonl", b'{"text": "fine"}\n' + DEEP + b"\n", 2),
        ("deep.csv", b'messages\n"' + DEEP + b'"\n', 2),
    ],
)
def test_a_deeply_nested_upload_is_saved_with_its_error(
    client_in: Client, data_dir: Path, name: str, data: bytes, line: int
) -> None:
    response = client_in.post(reverse("jobs:datasets"), {"file": SimpleUploadedFile(name, data)})
    dataset = Dataset.objects.get()
    assert response.status_code == 302
    assert any(e["line"] == line and MESSAGE in e["message"] for e in dataset.errors), dataset.errors
    assert MESSAGE in client_in.get(response.url).content.decode()


def test_deeply_nested_pasted_rows_are_refused_on_their_line(client_in: Client, data_dir: Path) -> None:
    text = '{"text": "fine"}\n' + DEEP.decode()
    response = client_in.post(reverse("jobs:datasets"), {"text": text, "name": "pasted"})
    assert response.status_code == 302
    assert Dataset.objects.get().errors[0] == {"line": 2, "message": MESSAGE}
