"""Bearer authentication with an API key: who the caller is, and one 401 for every key that is not good."""

from __future__ import annotations

import hmac
from datetime import timedelta

import pytest
from django.test import RequestFactory

from playground.apikeys import services
from playground.apikeys.models import ApiKey
from playground.core.services import error_status

pytestmark = pytest.mark.django_db


def request_with(authorization: str | None):
    headers = {} if authorization is None else {"Authorization": authorization}
    return RequestFactory().post("/v1/chat/completions", headers=headers)


def test_it_finds_no_key_without_a_bearer_header() -> None:
    assert services.authenticate(request_with(None)) is None
    assert services.authenticate(request_with("Basic YWxpY2U6cHc=")) is None


def test_a_new_key_authenticates_as_its_owner(key_and_secret, user) -> None:
    key, secret = key_and_secret
    found = services.authenticate(request_with(f"Bearer {secret}"))
    assert found == key
    assert found.user == user
    assert services.authenticate(request_with(f"bearer   {secret} ")) == key


def test_the_secret_is_stored_only_as_a_keyed_hash(key_and_secret) -> None:
    key, secret = key_and_secret
    row = ApiKey.objects.filter(pk=key.pk).values().get()
    assert secret.startswith("pg-")
    assert len(secret) == services.SECRET_LENGTH
    assert secret not in repr(row)
    assert row["secret_hash"] == services.hash_secret(secret) != services.hash_secret(secret + "x")
    # Keyed: the hash of the secret with no key (what a stolen database alone would let one check) differs.
    assert row["secret_hash"] != hmac.new(b"", secret.encode(), "sha256").hexdigest()
    assert key.shown_prefix == f"{secret[:11]}…"


@pytest.mark.parametrize(
    "credential",
    ["", "pg-", "not-a-key", "pg-" + "x" * 43, "pg-" + "é" * 43, "sk-" + "a" * 43, "OTHER"],
)
def test_malformed_and_unknown_keys_get_one_401(credential: str, key_and_secret) -> None:
    with pytest.raises(services.ApiKeyRefused) as refused:
        services.authenticate(request_with(f"Bearer {credential}"))
    assert str(refused.value) == "Invalid API key."
    assert error_status(refused.value) == 401


def test_a_key_with_a_known_prefix_and_a_wrong_rest_is_refused(key_and_secret) -> None:
    _, secret = key_and_secret
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    with pytest.raises(services.ApiKeyRefused, match="^Invalid API key.$"):
        services.authenticate(request_with(f"Bearer {forged}"))


def test_a_revoked_key_is_refused_like_an_unknown_one(key_and_secret, user) -> None:
    key, secret = key_and_secret
    services.revoke_key(key, user)
    with pytest.raises(services.ApiKeyRefused, match="^Invalid API key.$"):
        services.authenticate(request_with(f"Bearer {secret}"))


def test_a_key_of_an_inactive_user_is_refused(key_and_secret, user) -> None:
    _, secret = key_and_secret
    user.is_active = False
    user.save()
    with pytest.raises(services.ApiKeyRefused):
        services.authenticate(request_with(f"Bearer {secret}"))


def test_last_used_is_written_at_most_every_few_seconds(key_and_secret, django_assert_num_queries) -> None:
    key, secret = key_and_secret
    assert key.last_used is None
    first = services.authenticate(request_with(f"Bearer {secret}")).last_used
    assert first is not None
    with django_assert_num_queries(1):  # the lookup only: no UPDATE so soon after the last one
        services.authenticate(request_with(f"Bearer {secret}"))
    assert ApiKey.objects.get(pk=key.pk).last_used == first

    ApiKey.objects.filter(pk=key.pk).update(last_used=first - services.LAST_USED_EVERY - timedelta(seconds=1))
    later = services.authenticate(request_with(f"Bearer {secret}")).last_used
    assert ApiKey.objects.get(pk=key.pk).last_used == later > first
