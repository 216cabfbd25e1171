"""End to end: API keys as a user's script meets them through the official `openai` SDK against Daphne
serving the real default model: the key works and its usage shows on the keys page, a revoked key is an
AuthenticationError, and a key past a limit a RateLimitError with Retry-After."""

from __future__ import annotations

import json
import urllib.request

import pytest

from llmcore.pulls import DEFAULT_MODEL
from tests.conftest import manage, wait_for
from tests.e2e.conftest import Site
from tests.e2e.test_site import session_cookie

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "Say hello."}]
# Run inside the site's own database (its manage.py shell): make a key of the admin's with these limits.
MAKE_KEY = """
import json
from django.contrib.auth.models import User
from playground.apikeys.services import create_key
key, secret = create_key(User.objects.get(username="admin"), {name!r})
for field, value in {limits!r}.items():
    setattr(key, field, value)
key.save()
print(json.dumps({{"id": key.pk, "secret": secret, "prefix": key.shown_prefix}}))
"""
REVOKE_KEY = """
from django.contrib.auth.models import User
from playground.apikeys.models import ApiKey
from playground.apikeys.services import revoke_key
revoke_key(ApiKey.objects.get(pk={id}), User.objects.get(username="admin"))
"""


def make_key(site: Site, name: str, **limits: int) -> dict:
    output = manage(site.env, "shell", "-c", MAKE_KEY.format(name=name, limits=limits))
    return json.loads(output.strip().splitlines()[-1])


def sdk(site: Site, secret: str):
    import openai

    return openai.OpenAI(base_url=f"{site.url}/v1", api_key=secret, max_retries=0, timeout=300)


def test_a_key_works_and_its_usage_shows_on_the_page(site: Site) -> None:
    key = make_key(site, "usage test")
    answer = sdk(site, key["secret"]).chat.completions.create(
        model=DEFAULT_MODEL, messages=QUESTION, max_tokens=4
    )
    assert answer.usage is not None
    request = urllib.request.Request(f"{site.url}/keys/", headers={"Cookie": session_cookie(site)})
    page = urllib.request.urlopen(request, timeout=10).read().decode()
    card = page.split(f'id="key-{key["id"]}"')[1].split("</section>")[0]
    assert key["prefix"] in card
    assert f"<td>{DEFAULT_MODEL}</td>" in card
    numbers = [answer.usage.prompt_tokens, answer.usage.completion_tokens]
    assert "".join(f'<td class="num">{n}</td>' for n in [1, *numbers]) in card
    assert "last used never" not in card


def test_a_revoked_key_is_an_authentication_error(site: Site) -> None:
    import openai

    key = make_key(site, "revoked test")
    client = sdk(site, key["secret"])
    assert client.models.list().data
    manage(site.env, "shell", "-c", REVOKE_KEY.format(id=key["id"]))
    with pytest.raises(openai.AuthenticationError, match="Invalid API key."):
        client.models.list()
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=DEFAULT_MODEL, messages=QUESTION, max_tokens=2)


def test_a_key_past_its_requests_per_minute_is_a_rate_limit_error(site: Site) -> None:
    import openai

    client = sdk(site, make_key(site, "per-minute test", requests_per_minute=1)["secret"])
    client.chat.completions.create(model=DEFAULT_MODEL, messages=QUESTION, max_tokens=2)
    with pytest.raises(openai.RateLimitError, match="1 request per minute") as limited:
        client.chat.completions.create(model=DEFAULT_MODEL, messages=QUESTION, max_tokens=2)
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60


def test_a_stream_holds_its_slot_until_the_client_goes_away(site: Site) -> None:
    import openai

    client = sdk(site, make_key(site, "stream test", concurrent_streams=1)["secret"])
    story = [{"role": "user", "content": "Write a long story about a lighthouse."}]
    first = client.chat.completions.create(model=DEFAULT_MODEL, messages=story, max_tokens=400, stream=True)
    next(iter(first))  # the stream is running
    with pytest.raises(openai.RateLimitError, match="1 concurrent stream for") as limited:
        client.chat.completions.create(model=DEFAULT_MODEL, messages=QUESTION, max_tokens=2, stream=True)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    first.close()  # the client goes away mid-stream: the site gives the slot back

    def stream_admitted() -> bool:
        try:
            again = client.chat.completions.create(
                model=DEFAULT_MODEL, messages=QUESTION, max_tokens=2, stream=True
            )
        except openai.RateLimitError:
            return False
        list(again)
        return True

    wait_for(stream_admitted, 30, "the first stream's slot to come back")
