from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from playground.core import services

pytestmark = pytest.mark.django_db


def test_ensure_admin_creates_one_admin_and_prints_a_link(django_user_model, capsys) -> None:
    call_command("ensure_admin", "--base-url", "http://example.test:8000")
    out = capsys.readouterr().out
    admin = django_user_model.objects.get(is_superuser=True)
    assert admin.username == "admin"
    assert not admin.has_usable_password()
    assert "http://example.test:8000/login/link/" in out
    call_command("ensure_admin")
    assert django_user_model.objects.filter(is_superuser=True).count() == 1


def test_a_login_link_logs_in_once(user) -> None:
    path = services.login_link_path(user)
    client = Client()
    assert client.get(path).status_code == 200  # a GET (a link preview) does not spend it
    response = client.post(path)
    assert response.status_code == 302
    assert client.get(reverse("catalog:list")).status_code == 200
    again = Client()
    assert again.get(path).status_code == 400
    response = again.post(path)
    assert response.url == reverse("login")
    assert again.get(reverse("catalog:list")).status_code == 302


def test_a_tampered_login_link_is_refused(user) -> None:
    path = services.login_link_path(user)
    response = Client().post(path[:-3] + "xyz/")
    assert response.status_code == 302
    assert response.url == reverse("login")


def test_an_expired_login_link_is_refused(user, settings) -> None:
    path = services.login_link_path(user)
    settings.LOGIN_LINK_TIMEOUT = -1
    assert Client().get(path).status_code == 400


def test_login_link_for_an_inactive_user_is_refused(user) -> None:
    path = services.login_link_path(user)
    user.is_active = False
    user.save()
    assert Client().get(path).status_code == 400
