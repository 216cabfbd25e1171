"""Datasets: uploads are validated with line numbers, stored under generated names, limited in size, and
previewed through a model's tokenizer with the tokens that count for the loss marked."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from playground.jobs.models import Dataset
from tests.playground.jobs.conftest import INSTRUCTIONS

pytestmark = pytest.mark.django_db


def upload(client: Client, data: bytes, name: str):
    return client.post(reverse("jobs:datasets"), {"file": SimpleUploadedFile(name, data)})


def test_errors_are_listed_with_their_line_numbers(client_in: Client, data_dir: Path) -> None:
    bad = INSTRUCTIONS.splitlines()
    bad[2] = b'{"instruction": "no output here"}'
    bad[4] = b"{not json"
    response = upload(client_in, b"\n".join(bad), "broken.jsonl")
    dataset = Dataset.objects.get()
    assert response.url == reverse("jobs:dataset", args=[dataset.pk])
    html = client_in.get(response.url).content.decode()
    assert "line 3:" in html
    assert "line 5:" in html
    assert not dataset.is_valid
    form = client_in.get(reverse("jobs:new-finetune")).content.decode()
    assert f'<option value="{dataset.pk}"' not in form, "a dataset with errors cannot be chosen"


def test_a_filename_with_folders_never_becomes_a_path(client_in: Client, data_dir: Path) -> None:
    upload(client_in, INSTRUCTIONS, "../../x.jsonl")
    dataset = Dataset.objects.get()
    assert dataset.name == "x.jsonl"
    assert dataset.path.parent == data_dir / "datasets"
    assert dataset.path.read_bytes() == INSTRUCTIONS
    assert not (data_dir.parent / "x.jsonl").exists()
    assert not (data_dir / "x.jsonl").exists()
    assert dataset.rows == 12
    assert dataset.format == "instruction"


def test_the_size_limit_and_file_types_are_enforced(client_in: Client, data_dir: Path, settings) -> None:
    settings.DATASET_MAX_BYTES = 100
    response = upload(client_in, INSTRUCTIONS, "big.jsonl")
    assert response.status_code == 400
    assert "the limit is 100 bytes" in response.content.decode()
    settings.DATASET_MAX_BYTES = 10_000
    response = upload(client_in, b"MZ\x90\x00", "model.exe")
    assert response.status_code == 400
    assert "Unsupported file type .exe" in response.content.decode()
    assert not Dataset.objects.exists()
    assert not any((data_dir / "datasets").glob("*")) if (data_dir / "datasets").exists() else True


def test_pasted_rows_and_a_shipped_sample_become_datasets(client_in: Client, data_dir: Path) -> None:
    response = client_in.post(reverse("jobs:datasets"), {"text": INSTRUCTIONS.decode(), "name": "mine"})
    assert response.status_code == 302
    assert Dataset.objects.get(name="mine.jsonl").rows == 12
    response = client_in.post(reverse("jobs:dataset-sample"), {"sample": "pirate-instructions"})
    sample = Dataset.objects.get(sample="pirate-instructions")
    assert response.url == reverse("jobs:dataset", args=[sample.pk])
    assert sample.is_valid
    assert sample.format == "instruction"
    response = client_in.post(reverse("jobs:dataset-sample"), {"sample": "../../etc/passwd"})
    assert Dataset.objects.count() == 2


def test_the_preview_marks_the_tokens_that_count_for_the_loss(
    client_in: Client, data_dir: Path, tiny_model
) -> None:
    upload(client_in, INSTRUCTIONS, "pirate.jsonl")
    dataset = Dataset.objects.get()
    html = client_in.get(reverse("jobs:dataset", args=[dataset.pk]) + "?model=tiny-llama").content.decode()
    assert 'class="tok loss"' in html, "the answer's tokens train"
    assert 'class="tok"' in html, "the prompt's tokens do not"
    assert "counting for the loss" in html
