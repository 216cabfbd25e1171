from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="correct horse battery staple")


@pytest.fixture
def client_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def data_dir(tmp_path: Path, settings) -> Path:
    """Datasets, uploads and job folders of this test go to its own temp folder."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    return settings.DATA_DIR
