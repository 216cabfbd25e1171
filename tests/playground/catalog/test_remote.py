"""Remote models: a second server process of the project (Daphne serving the tiny model, with an API key)
added to this site's catalog as a remote model by an admin, then chatted with end to end over the chat
socket; the URL checks that keep the server from being turned into a proxy; and the pages that need
weights saying so."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.test import Client
from django.urls import reverse

from llmcore.remote import RemoteError, check_base_url
from llmcore.store import ModelStore
from playground.catalog.models import ModelEntry, RemoteEndpoint
from playground.catalog.services import NeedsWeights
from playground.chat.models import Message
from playground.inspect.services.common import get_loaded
from tests.conftest import ROOT, TINY_NAME, free_port, manage, site_env, stop_process, wait_for
from tests.playground.chat.test_branches_socket import action, talk

pytestmark = pytest.mark.django_db(transaction=True)
MAKE_KEY = (
    "from django.contrib.auth.models import User; from playground.apikeys.services import create_key; "
    "print(create_key(User.objects.get(username='admin'), 'remote test')[1])"
)


@dataclass
class Server:
    url: str  # its /v1 base URL
    key: str


@pytest.fixture(scope="module")
def other_site(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Another copy of the playground, in its own process and data folder, serving the tiny model."""
    data_dir = tmp_path_factory.mktemp("other-site")
    ModelStore(data_dir / "models").import_folder(tiny_model_dir, TINY_NAME, license="MIT")
    env = site_env(data_dir, MODEL_DIR=str(data_dir / "models"), REDIS_URL="", PRELOAD_DEFAULT_MODEL="1")
    manage(env, "migrate", "--noinput")
    manage(env, "ensure_admin")
    key = manage(env, "shell", "-c", MAKE_KEY).strip().splitlines()[-1]
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "playground.asgi:application"],
        cwd=ROOT, env=env, stdout=(data_dir / "web.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        server = Server(f"http://127.0.0.1:{port}/v1", key)
        # its API, not /healthz (503 here: the site has no job worker, which the API does not need)
        auth = {"Authorization": f"Bearer {key}"}
        wait_for(
            lambda: requests.get(f"{server.url}/models", headers=auth, timeout=5).ok, 120, "the site", web
        )
        yield server
    finally:
        stop_process(web, sig=signal.SIGTERM)


@pytest.fixture
def allowed(settings):
    settings.REMOTE_MODEL_HOSTS = ["127.0.0.1"]


def add(client: Client, server: Server, **fields: str):
    form = {"base_url": server.url, "model": TINY_NAME, "api_key": server.key, "name": "far-llama", **fields}
    return client.post("/models/add/remote/", {f"remote-{k}": v for k, v in form.items()})


@pytest.fixture
def remote(admin_client: Client, other_site: Server, allowed, store) -> ModelEntry:
    response = add(admin_client, other_site)
    assert response.status_code == 302, response.content.decode()[-2000:]
    return ModelEntry.objects.get(name="far-llama")


# --- the URL checks ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://127.0.0.1/v1", "http:// or https://"),
        ("http://user:secret@127.0.0.1/v1", "user name and password"),
        ("http://127.0.0.1/v1?to=elsewhere", "no query"),
        ("http://169.254.169.254/latest", "not in REMOTE_MODEL_HOSTS"),
        ("http://127.0.0.1.evil.example/v1", "not in REMOTE_MODEL_HOSTS"),
        ("http://gpu-box:9000/v1", "not in REMOTE_MODEL_HOSTS"),  # the list names gpu-box:8000 only
        ("127.0.0.1:8000/v1", "http:// or https://"),
    ],
)
def test_a_base_url_must_be_http_without_credentials_on_an_allowed_host(url: str, words: str) -> None:
    with pytest.raises(RemoteError, match=words):
        check_base_url(url, ["127.0.0.1", "gpu-box:8000"])


def test_allowed_urls_are_normalized_and_nothing_is_allowed_by_default() -> None:
    assert check_base_url(" http://GPU-box:8000/v1/ ", ["gpu-box:8000"]) == "http://gpu-box:8000/v1"
    assert check_base_url("https://[::1]/v1", ["[::1]"]) == "https://[::1]/v1"
    with pytest.raises(RemoteError, match="REMOTE_MODEL_HOSTS"):
        check_base_url("http://127.0.0.1/v1", [])


# --- adding one -------------------------------------------------------------------------------------
def test_an_admin_adds_a_remote_model_and_its_key_is_never_shown(
    remote: ModelEntry, admin_client: Client, client_in: Client, other_site: Server, tiny_model_dir: Path
) -> None:
    assert remote.kind == "remote"
    # the other server's /v1/models said how long its context is (max_model_len)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert remote.context_length == config["max_position_embeddings"]
    endpoint = RemoteEndpoint.objects.get(entry=remote)
    assert endpoint.api_key == other_site.key
    assert endpoint.base_url == other_site.url
    listing = client_in.get("/models/").content.decode()
    assert "far-llama" in listing
    assert 'data-kind="remote"' in listing
    assert '<td class="num" data-fact="size">on its server</td>' in listing  # not "0 B"
    for client in (admin_client, client_in):
        page = client.get("/models/far-llama/").content.decode()
        assert other_site.key not in page
        assert 'data-fact="remote-model"' in page
        assert "Served elsewhere" in page
        assert "Shared with everyone (a remote model an admin added)." in page
        # the chat is linked; the tools that read weights say why not
        assert f"{reverse('chat:index')}?model=far-llama" in page
        assert f"{reverse('inspect:attention')}?model=far-llama" not in page
        assert f"{reverse('inspect:attention')}?model=" not in page
        assert "its weights are on 127.0.0.1" in page
    assert other_site.key not in admin_client.get("/models/add/").content.decode()


def test_only_admins_add_remote_models(client_in: Client, other_site: Server, allowed, store) -> None:
    assert add(client_in, other_site).status_code == 403
    assert not ModelEntry.objects.filter(name="far-llama").exists()
    assert "remote-admins-only" in client_in.get("/models/add/").content.decode()


def test_adding_needs_the_csrf_token(admin_user, other_site: Server, allowed, store) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert add(client, other_site).status_code == 403
    assert not ModelEntry.objects.filter(name="far-llama").exists()


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"api_key": "sk-wrong"}, "base_url", "answered 401"),
        ({"model": "no-such-model"}, "model", f"serves: {TINY_NAME}"),
        ({"name": "Bad Name!"}, "name", "Invalid model name"),
        ({"name": TINY_NAME}, "name", "in the catalog already"),
        ({"name": "add"}, "name", "catalog page"),
    ],
)
def test_what_is_wrong_is_said_beside_its_field(
    admin_client: Client, other_site: Server, allowed, tiny_model, fields, field: str, words: str
) -> None:
    response = add(admin_client, other_site, **fields)
    assert response.status_code in (400, 409)
    errors = response.context["remote_form"].errors
    assert words in " ".join(errors[field]), errors
    assert "sk-wrong" not in response.content.decode()
    assert ModelEntry.objects.filter(meta__has_key="remote").count() == 0


def test_a_host_off_the_allow_list_is_refused_and_a_removed_host_stops_its_models(
    admin_client: Client, remote: ModelEntry, other_site: Server, user, settings
) -> None:
    settings.REMOTE_MODEL_HOSTS = ["gpu-box"]
    response = add(admin_client, other_site, name="other-llama")
    assert response.status_code == 400
    assert "not in REMOTE_MODEL_HOSTS" in " ".join(response.context["remote_form"].errors["base_url"])
    ((*_, last),) = talk(user, chat_frame())
    assert last["type"] == "error"
    assert "cannot be used now" in last["error"]


def test_a_store_folder_cannot_take_a_remote_models_name(
    remote: ModelEntry, admin_client: Client, tiny_model_dir: Path
) -> None:
    response = admin_client.post("/models/add/import/", {"path": str(tiny_model_dir), "name": "far-llama"})
    assert response.status_code == 400
    assert "exists already" in " ".join(response.context["form"].errors["name"])
    assert ModelEntry.objects.get(name="far-llama").is_remote


# --- chatting through it ----------------------------------------------------------------------------
def chat_frame(**settings) -> dict:
    return {
        "type": "send",
        "conversation": None,
        "model": "far-llama",
        "content": "Hello over there",
        "settings": {"temperature": 0, "max_new_tokens": 8, **settings},
    }


def test_a_chat_streams_from_the_other_server_and_is_saved_with_its_tokens(remote: ModelEntry, user) -> None:
    ((started, *tokens, stats, done),) = talk(user, chat_frame())
    assert started["type"] == "started"
    assert started["prompt_tokens"] == 0
    assert [t["type"] for t in tokens] == ["token"] * len(tokens)
    assert tokens
    assert stats["type"] == "stats"
    assert stats["prompt_tokens"] > 0
    assert stats["generated_tokens"] == len(tokens)
    assert done["type"] == "done"
    assert done["reason"] == "length"
    assert done["error"] is None
    assert done["text"] == "".join(t["text"] for t in tokens)
    for token in tokens:  # the other server returned logprobs: each token has its probability and top 5
        assert token["id"] == -1
        assert 0 < token["prob"] <= 1
        assert len(token["alternatives"]) >= 5
        assert token["alternatives"][0][1] == token["text"] or not token["text"]  # greedy: the likeliest
    message = Message.objects.get(pk=done["message"])
    assert message.status == Message.Status.COMPLETE
    assert message.content == done["text"]
    assert message.provenance["remote"] == {"host": remote.meta["remote"]["host"], "model": TINY_NAME}
    assert message.provenance["stats"]["stop_reason"] == "length"
    assert message.prompt_ids == []
    assert len(message.tokens) == len(tokens)
    client = Client()
    client.force_login(user)
    page = client.get(reverse("chat:conversation", args=[message.conversation_id])).content.decode()
    assert 'data-testid="remote">served by 127.0.0.1' in page
    assert 'data-action="regenerate"' in page
    assert 'data-action="continue"' not in page  # cut by length, but continuing needs its token ids
    assert 'data-remote="127.0.0.1' in page
    assert "far-llama (remote: 127.0.0.1" in page


def test_the_same_seed_gives_the_same_answer_through_the_server(remote: ModelEntry, user) -> None:
    sampled = {"temperature": 1.0, "seed": 11, "max_new_tokens": 10}
    ((*_, first),) = talk(user, chat_frame(**sampled))
    ((*_, again),) = talk(user, chat_frame(**sampled))
    ((*_, other),) = talk(user, chat_frame(**{**sampled, "seed": 12}))
    assert first["text"] == again["text"]
    assert Message.objects.get(pk=first["message"]).provenance["seed"] == 11
    assert other["text"] != first["text"]


def test_the_inspector_shows_what_the_server_sent_and_says_what_it_cannot(remote: ModelEntry, user) -> None:
    ((*_, done),) = talk(user, chat_frame())
    client = Client()
    client.force_login(user)
    listing = client.get(f"/chat/message/{done['message']}/tokens/").json()
    assert listing["remote"] == remote.meta["remote"]["host"]
    assert [t["id"] for t in listing["tokens"]] == [None] * len(listing["tokens"])
    token = client.get(f"/chat/message/{done['message']}/token/0/").json()
    assert token["attention"] is None
    assert "remote model" in token["attention_error"]
    assert token["alternatives"][0]["chosen"]
    assert token["chosen_listed"]
    assert 0 < token["token"]["prob"] <= 1
    assert client.get(f"/chat/message/{done['message']}/token/99/").status_code == 404


def test_regenerate_and_edit_work_and_what_needs_token_ids_is_refused(remote: ModelEntry, user) -> None:
    ((*_, done),) = talk(user, chat_frame(max_new_tokens=4))
    message = Message.objects.get(pk=done["message"])
    conversation = message.conversation_id
    ((*_, again),) = talk(user, action("regenerate", conversation, message.pk, settings={"seed": 3}))
    assert again["type"] == "done"
    assert again["message"] != message.pk
    edited = action("edit", conversation, message.parent_id, content="Hello again", settings={})
    ((*_, after_edit),) = talk(user, edited)
    assert after_edit["type"] == "done"
    for refused in (action("continue", conversation, message.pk), action("replay", conversation, message.pk)):
        ((reply,),) = talk(user, refused)
        assert reply["type"] == "error", reply
    ((reply,),) = talk(user, action("branch", conversation, message.pk, at=0, token=5))
    assert reply["type"] == "error"
    assert "remote model" in reply["error"]
    ((reply,),) = talk(user, chat_frame(best_of=2))
    assert reply["type"] == "error"
    assert "best of 2" in reply["error"]
    ((reply,),) = talk(user, chat_frame(max_new_tokens=remote.context_length))
    assert reply["type"] == "error"
    assert f"context of {remote.context_length} tokens" in reply["error"]


def test_stopping_mid_answer_saves_what_came(remote: ModelEntry, user) -> None:
    from tests.playground.chat.test_consumer import frames_until, headers_for, open_socket, run

    headers = headers_for(user)

    async def scenario() -> list[dict]:
        communicator = await open_socket(headers)
        await communicator.send_json_to(chat_frame(max_new_tokens=200, temperature=1.0))
        first = await frames_until(communicator, "token")
        await communicator.send_json_to({"type": "stop"})
        rest = await frames_until(communicator, "done")
        await communicator.disconnect()
        return first + rest

    frames = run(scenario())
    done = frames[-1]
    assert done["reason"] == "cancelled"
    generated = [f for f in frames if f["type"] == "token"]
    assert len(generated) < 200
    message = Message.objects.get(pk=done["message"])
    assert message.status == Message.Status.STOPPED
    assert message.content == done["text"]


def test_a_server_error_ends_the_answer_with_its_words(remote: ModelEntry, user) -> None:
    RemoteEndpoint.objects.filter(entry=remote).update(api_key="sk-revoked")
    ((started, *_, done),) = talk(user, chat_frame())
    assert started["type"] == "started"
    assert done["reason"] == "error"
    assert "answered 401" in done["error"]
    assert "sk-revoked" not in done["error"]
    assert Message.objects.get(pk=done["message"]).status == Message.Status.ERROR


# --- the rest of the site ---------------------------------------------------------------------------
def test_pages_that_need_weights_say_so(remote: ModelEntry, client_in: Client, tiny_model) -> None:
    said = "far-llama is a remote model, served by 127.0.0.1"
    page = client_in.post(reverse("inspect:attention"), {"model": "far-llama", "text": "Hello"})
    assert said in page.content.decode()
    assert "cannot use it" in page.content.decode()
    post = client_in.post(reverse("jobs:new-quantize"), {"base_model": "far-llama", "method": "int8"})
    assert said in post.content.decode()
    for name in (
        "inspect:attention",
        "inspect:next-token",
        "inspect:logit-lens",
        "jobs:new-finetune",
        "accelerate:page",
    ):
        listing = client_in.get(reverse(name))
        assert listing.status_code == 200, name
        assert TINY_NAME in listing.content.decode(), name
        assert 'value="far-llama"' not in listing.content.decode(), name
    assert 'value="far-llama"' in client_in.get(reverse("chat:index")).content.decode()
    with pytest.raises(NeedsWeights, match=said):  # what every inspect service loads a model through
        get_loaded("far-llama")


def test_the_api_does_not_proxy_remote_models(remote: ModelEntry, user, tiny_model, settings) -> None:
    from playground.apikeys import services as apikeys

    settings.REDIS_URL = ""  # the key's counters in the database

    secret = apikeys.create_key(user, "script")[1]
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert TINY_NAME in ids
    assert "far-llama" not in ids
    body = {"model": "far-llama", "messages": [{"role": "user", "content": "hi"}]}
    answer = client.post("/v1/chat/completions", json.dumps(body), content_type="application/json")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"


def test_removing_a_remote_model_drops_it_and_its_key(remote: ModelEntry, admin_client: Client) -> None:
    page = admin_client.get("/models/far-llama/remove/").content.decode()
    assert "The server and its model are not touched" in page
    assert admin_client.post("/models/far-llama/remove/").status_code == 302
    assert not ModelEntry.objects.filter(name="far-llama").exists()
    assert not RemoteEndpoint.objects.exists()
