from __future__ import annotations

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
