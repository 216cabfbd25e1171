"""Login throttling: wrong passwords, the admin login and bad login-link tokens, by address and account."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from playground.core import services

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"  # the `user` fixture's


@pytest.fixture(autouse=True)
def limits(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def log_in(client: Client, username: str, password: str, path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password})


def fail(client: Client, times: int, username: str = "alice", path: str = "/accounts/login/") -> None:
    for _ in range(times):
        log_in(client, username, "wrong password", path)


def test_it_refuses_the_right_password_after_too_many_wrong_ones(user) -> None:
    client = Client()
    fail(client, 2)
    assert log_in(client, "alice", "wrong password").status_code == 429  # the limit is reached
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed attempts; try again in 15 minutes." in response.content.decode()
    assert response["Retry-After"] == "900"
    assert client.get("/models/").status_code == 302  # not logged in


def test_it_refuses_another_account_from_the_same_address(user, django_user_model) -> None:
    django_user_model.objects.create_user(username="bob", password="bob's own password")
    fail(Client(), 3, username="bob")
    response = log_in(Client(), "alice", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed attempts" in response.content.decode()


def test_it_refuses_the_account_from_another_address(user) -> None:
    fail(Client(REMOTE_ADDR="10.0.0.7"), 3)
    assert log_in(Client(REMOTE_ADDR="10.0.0.8"), "alice", PASSWORD).status_code == 429
    # Another account from that other address is not affected.
    assert log_in(Client(REMOTE_ADDR="10.0.0.8"), "carol", "nope").status_code == 200


def test_the_admin_login_is_throttled_too(django_user_model) -> None:
    django_user_model.objects.create_superuser(username="root", password=PASSWORD)
    client = Client()
    fail(client, 3, username="root", path="/admin/login/")
    response = log_in(client, "root", PASSWORD, path="/admin/login/")
    assert response.status_code == 429
    assert "Too many failed attempts" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_flood_of_bad_login_link_tokens_is_throttled(user) -> None:
    client = Client()
    for i in range(3):
        assert client.post(f"/login/link/not-a-token-{i}/").status_code in (302, 429)
    good = services.login_link_path(user)
    response = client.get(good)
    assert response.status_code == 429
    assert "Too many failed attempts" in response.content.decode()
    assert client.post(good).status_code == 429
    # The link was not spent: from another address it still logs in.
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert other.post(good).status_code == 302
    assert other.get("/models/").status_code == 200


def test_a_password_lockout_from_another_address_leaves_login_links_working(user) -> None:
    fail(Client(REMOTE_ADDR="10.0.0.7"), 3)  # someone elsewhere locks the account's password login
    client = Client()
    assert client.post(services.login_link_path(user)).status_code == 302
    assert client.get("/models/").status_code == 200


def test_the_lockout_ends_when_the_cool_off_has_passed(user) -> None:
    client = Client()
    fail(client, 3)
    assert log_in(client, "alice", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert log_in(client, "alice", PASSWORD).status_code == 302
    assert client.get("/models/").status_code == 200


def test_the_minutes_left_count_down_from_the_last_failure(user) -> None:
    client = Client()
    fail(client, 3)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=11, seconds=30))
    response = client.get(services.login_link_path(user))
    assert response.status_code == 429
    assert "try again in 4 minutes" in response.content.decode()


def test_an_admin_can_lift_a_lockout_at_once(user) -> None:
    client = Client()
    fail(client, 3)
    assert log_in(client, "alice", PASSWORD).status_code == 429
    call_command("axes_reset")
    assert log_in(client, "alice", PASSWORD).status_code == 302


def test_behind_a_proxy_the_address_is_the_one_the_proxy_saw(user, settings) -> None:
    settings.BEHIND_PROXY = True
    settings.PROXY_COUNT = 1
    # Both clients come through the same proxy (REMOTE_ADDR); the proxy appends the real peer. The first
    # one also sends a made-up X-Forwarded-For entry, which must not let it dodge the count.
    for i in range(3):
        attacker = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, 203.0.113.5")
        log_in(attacker, f"user{i}", "x")  # three accounts, one address
    locked = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.5")
    assert log_in(locked, "alice", PASSWORD).status_code == 429
    neighbour = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.4")
    assert log_in(neighbour, "alice", PASSWORD).status_code == 302
