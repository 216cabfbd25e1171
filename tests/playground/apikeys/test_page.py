"""The API keys page: make a key (its secret shown once), see usage, revoke; what is one user's is out of
another's reach; admins see and revoke every key."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from playground.apikeys import services
from playground.apikeys.models import ApiKey

pytestmark = pytest.mark.django_db
PAGE = reverse("apikeys:list")


@pytest.fixture
def stranger(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="another long password")


@pytest.fixture
def stranger_key(stranger) -> ApiKey:
    return services.create_key(stranger, "mallory's script")[0]


def test_it_needs_a_login() -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert Client().post(reverse("apikeys:create"), {"name": "x"}).status_code == 302
    assert not ApiKey.objects.exists()


def test_a_new_key_is_shown_once(client_in: Client, user) -> None:
    response = client_in.post(reverse("apikeys:create"), {"name": "laptop script"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    key = ApiKey.objects.get(owner=user)
    html = response.content.decode()
    secret = html.split('<code class="secret" id="new-secret">')[1].split("</code>")[0]
    assert services.hash_secret(secret) == key.secret_hash
    assert "it will not be shown again" in html

    later = client_in.get(PAGE).content.decode()
    assert secret not in later
    assert key.shown_prefix in later
    assert "laptop script" in later


def test_a_key_needs_a_name_said_beside_the_field(client_in: Client) -> None:
    response = client_in.post(reverse("apikeys:create"), {"name": "  "})
    assert response.status_code == 400
    assert 'id="name-error">This field is required.' in response.content.decode()
    assert not ApiKey.objects.exists()


def test_forms_without_the_csrf_token_are_refused(user) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("apikeys:create"), {"name": "x"}).status_code == 403
    key, _ = services.create_key(user, "kept")
    assert client.post(reverse("apikeys:revoke", args=[key.pk])).status_code == 403
    assert ApiKey.objects.get().revoked_at is None

    page = client.get(PAGE).content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    response = client.post(reverse("apikeys:create"), {"name": "x", "csrfmiddlewaretoken": token})
    assert response.status_code == 201


def test_revoking_asks_first_then_the_key_stops_working(client_in: Client, user) -> None:
    key, secret = services.create_key(user, "old")
    url = reverse("apikeys:revoke", args=[key.pk])
    confirm = client_in.get(url)
    assert confirm.status_code == 200
    assert "This cannot be undone" in confirm.content.decode()
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None  # a GET never writes

    response = client_in.post(url, follow=True)
    assert "no longer authenticates" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert key.revoked_by == user
    assert "revoked" in client_in.get(PAGE).content.decode()


def test_usage_per_model_and_day_is_on_the_page(client_in: Client, user) -> None:
    key, _ = services.create_key(user, "counted")
    with services.admit(key, stream=False) as admission:
        admission.record("tiny-llama", 1234, 56)
    html = client_in.get(PAGE).content.decode()
    row = html.split(f'id="key-{key.pk}"')[1]
    assert "<td>tiny-llama</td>" in row
    assert "1,234" in row
    assert "56" in row
    assert "(1,290 used today)" in row


def test_another_users_keys_are_out_of_reach(client_in: Client, stranger_key: ApiKey) -> None:
    assert stranger_key.name not in client_in.get(PAGE).content.decode()
    url = reverse("apikeys:revoke", args=[stranger_key.pk])
    assert client_in.get(url).status_code == 404
    assert client_in.post(url).status_code == 404
    assert ApiKey.objects.get(pk=stranger_key.pk).revoked_at is None
    assert 'id="every-key"' not in client_in.get(PAGE).content.decode()


def test_an_admin_sees_and_revokes_every_key(admin_client: Client, admin_user, stranger_key: ApiKey) -> None:
    html = admin_client.get(PAGE).content.decode()
    assert 'id="every-key"' in html
    assert stranger_key.shown_prefix in html
    assert "mallory" in html

    url = reverse("apikeys:revoke", args=[stranger_key.pk])
    assert "of mallory" in admin_client.get(url).content.decode()
    admin_client.post(url)
    stranger_key.refresh_from_db()
    assert stranger_key.revoked_at is not None
    assert stranger_key.revoked_by == admin_user
    assert "by admin" in admin_client.get(PAGE).content.decode()


def test_the_django_admin_shows_keys_with_the_hash_read_only(admin_client: Client, stranger_key) -> None:
    listing = admin_client.get(reverse("admin:apikeys_apikey_changelist"))
    assert listing.status_code == 200
    assert escape(stranger_key.name) in listing.content.decode()
    change = admin_client.get(reverse("admin:apikeys_apikey_change", args=[stranger_key.pk])).content.decode()
    assert 'name="secret_hash"' not in change
    assert stranger_key.secret_hash in change
    assert 'name="requests_per_minute"' in change  # limits are what an admin changes here
    assert admin_client.get(reverse("admin:apikeys_apikey_add")).status_code == 403


def test_the_account_area_links_to_the_page(client_in: Client) -> None:
    html = client_in.get(PAGE).content.decode()
    assert f'<a href="{PAGE}" aria-current="page">API keys</a>' in html
