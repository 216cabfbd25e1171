"""What a user makes is theirs until they share it: a job's model is private to its owner and admins, and
everywhere else reads exactly as if it did not exist. Base models (imported, pulled) are everyone's.

The owner / stranger / admin trio: alice owns `alice-tune` (a LoRA of the tiny model on her dataset),
mallory is a stranger to it, root is an admin.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from playground.catalog.models import ModelEntry
from playground.catalog.services import may_see, owner_extra, set_shared, sync_catalog
from playground.chat import services
from playground.chat.forms import send_form
from playground.core.services import model_cache
from playground.jobs.models import Job
from playground.jobs.services.datasets import save_dataset
from playground.jobs.services.runner import run_job
from tests.playground.catalog.test_downloads import child_folder
from tests.playground.chat.test_consumer import frames_until, headers_for, open_socket, run
from tests.playground.jobs.conftest import INSTRUCTIONS

pytestmark = pytest.mark.django_db

PRIVATE = "alice-tune"
UNKNOWN = "no-such-model"  # what a stranger's answer must look like, name for name
LINEAGE = {"job": 1, "kind": "finetune", "dataset": "secret-pirates.jsonl", "dataset_rows": 12,
           "hyperparameters": {"lora_rank": 8, "learning_rate": 0.002}}  # fmt: skip


@pytest.fixture
def stranger(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="another long passphrase")


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="the admin's passphrase")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def stranger_in(stranger) -> Client:
    return logged_in(stranger)


@pytest.fixture
def admin_in(admin) -> Client:
    return logged_in(admin)


@pytest.fixture
def private(store, tiny_model, tiny_model_dir: Path, tmp_path: Path, user) -> str:
    """alice's fine-tune of the tiny model, with a GGUF export and an adapter, as a job registers it."""
    store.import_folder(
        child_folder(tiny_model_dir, tmp_path), PRIVATE, parent="tiny-llama", method="lora",
        extra={**LINEAGE, **owner_extra(user)},
    )  # fmt: skip
    return PRIVATE


def share(client: Client, name: str, shared: bool, **headers: Any) -> Any:
    return client.post(reverse("catalog:share", args=[name]), {"shared": "1" if shared else "0"}, **headers)


def normalized(html: str) -> str:
    """A page without what differs on every render (CSRF tokens, nonces)."""
    html = re.sub(r'(csrfmiddlewaretoken" value|nonce)="[^"]*"', "", html)
    return re.sub(r'"X-CSRFToken": "[^"]*"', "", html)


def same_as_unknown(client: Client, method: str, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """Ask for the private model and for a model that does not exist; the answers must not differ except
    for the name. Returns the private model's (status, JSON)."""

    def ask(name: str) -> tuple[int, Any]:
        payload = json.loads(json.dumps(body).replace("{name}", name))
        response = getattr(client, method)(url, json.dumps(payload), content_type="application/json")
        return response.status_code, response.json()

    status, answer = ask(PRIVATE)
    unknown_status, unknown = ask(UNKNOWN)
    assert (status, answer) == (unknown_status, json.loads(json.dumps(unknown).replace(UNKNOWN, PRIVATE)))
    return status, answer


# --- the catalog pages -------------------------------------------------------------------------------
def test_a_private_model_is_listed_for_its_owner_and_admins_and_base_models_for_everyone(
    client_in: Client, stranger_in: Client, admin_in: Client, private: str
) -> None:
    for client in (client_in, admin_in):
        html = client.get(reverse("catalog:list")).content.decode()
        assert f'href="/models/{PRIVATE}/"' in html
        assert 'data-access="private"' in html
    html = stranger_in.get(reverse("catalog:list")).content.decode()
    assert PRIVATE not in html
    assert 'href="/models/tiny-llama/"' in html, "a base model is everyone's"
    rows = stranger_in.get(reverse("catalog:list"), {"q": "alice"}, HTTP_HX_REQUEST="true").content.decode()
    assert PRIVATE not in rows, "the filter does not find it either"


def test_a_stranger_gets_a_404_for_a_private_models_page_and_files_as_for_a_missing_one(
    client_in: Client, stranger_in: Client, admin_in: Client, private: str
) -> None:
    for url in (
        "/models/{}/",
        "/models/{}/download/gguf/",
        "/models/{}/download/adapter/",
        "/jobs/compare/{}/",
    ):
        response = stranger_in.get(url.format(PRIVATE))
        missing = stranger_in.get(url.format(UNKNOWN))
        assert response.status_code == missing.status_code == 404, url
        assert normalized(response.content.decode()) == normalized(missing.content.decode()).replace(
            UNKNOWN, PRIVATE
        )
        for client in (client_in, admin_in):
            assert client.get(url.format(PRIVATE)).status_code == 200, url
    assert share(stranger_in, PRIVATE, True).status_code == 404, "nor can it be shared by a stranger"
    assert not ModelEntry.objects.get(name=PRIVATE).shared


def test_the_page_says_who_can_see_the_model(
    client_in: Client, admin_in: Client, stranger_in: Client, private: str
) -> None:
    mine = client_in.get(reverse("catalog:detail", args=[PRIVATE])).content.decode()
    assert "Private: only you and admins." in mine
    assert "Share with everyone" in mine
    assert "secret-pirates.jsonl (12 rows)" in mine
    assert "LoRA rank" in mine, "its settings, labelled"
    as_admin = admin_in.get(reverse("catalog:detail", args=[PRIVATE])).content.decode()
    assert "Private: only alice and admins." in as_admin
    assert "Share with everyone" in as_admin
    assert "secret-pirates.jsonl" in as_admin
    base = stranger_in.get(reverse("catalog:detail", args=["tiny-llama"])).content.decode()
    assert "Shared with everyone (a base model)." in base
    assert 'name="shared"' not in base
    assert PRIVATE not in base, "a private child is not listed under its parent for a stranger"
    assert PRIVATE in client_in.get(reverse("catalog:detail", args=["tiny-llama"])).content.decode()


# --- sharing -----------------------------------------------------------------------------------------
def test_sharing_shows_the_model_to_everyone_without_how_it_was_trained(
    client_in: Client, stranger_in: Client, private: str
) -> None:
    partial = share(client_in, PRIVATE, True, HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith("<section")
    assert 'id="sharing"' in partial
    assert "Shared with everyone." in partial
    assert "Make private" in partial
    assert PRIVATE in stranger_in.get(reverse("catalog:list")).content.decode()
    html = stranger_in.get(reverse("catalog:detail", args=[PRIVATE])).content.decode()
    assert "Shared with everyone." in html
    assert "from a private dataset" in html
    assert "secret-pirates" not in html
    assert "LoRA rank" not in html
    assert 'name="shared"' not in html, "only the owner or an admin changes who sees it"
    assert stranger_in.get(reverse("catalog:download", args=[PRIVATE, "adapter"])).status_code == 200
    assert share(stranger_in, PRIVATE, False).status_code == 403
    assert ModelEntry.objects.get(name=PRIVATE).shared


def test_unsharing_hides_it_again_and_base_models_stay_shared(
    client_in: Client, stranger_in: Client, admin_in: Client, private: str
) -> None:
    share(client_in, PRIVATE, True)
    response = share(client_in, PRIVATE, False)
    assert response.status_code == 302, "works without JavaScript too"
    assert response["Location"] == f"/models/{PRIVATE}/"
    assert stranger_in.get(reverse("catalog:detail", args=[PRIVATE])).status_code == 404
    assert PRIVATE not in stranger_in.get(reverse("catalog:list")).content.decode()
    assert share(admin_in, PRIVATE, True).status_code == 302, "an admin may share it too"
    assert stranger_in.get(reverse("catalog:detail", args=[PRIVATE])).status_code == 200
    assert share(admin_in, "tiny-llama", False).status_code == 403, "base models are everyone's"
    assert ModelEntry.objects.get(name="tiny-llama").shared
    assert client_in.get(reverse("catalog:share", args=[PRIVATE])).status_code == 405, "a GET never writes"


def test_a_shared_child_does_not_reveal_a_private_parent(
    client_in: Client, stranger_in: Client, store, private: str, tiny_model_dir: Path, user
) -> None:
    extra = {"job": 2, "description": f"Fine-tune of {PRIVATE} (job 2).", **owner_extra(user)}
    store.import_folder(tiny_model_dir, "alice-tune-2", parent=PRIVATE, method="sft", extra=extra,
                        source_label=f"job 2: finetune sft of {PRIVATE}")  # fmt: skip
    share(client_in, "alice-tune-2", True)
    for url in (reverse("catalog:list"), reverse("catalog:detail", args=["alice-tune-2"])):
        html = stranger_in.get(url).content.decode()
        assert "alice-tune-2" in html
        assert "a private model" in html
        assert f"{PRIVATE}/" not in html
        assert f"of {PRIVATE}" not in html
    assert stranger_in.get(reverse("jobs:compare", args=["alice-tune-2"])).status_code == 404
    assert (
        f'href="/models/{PRIVATE}/"'
        in client_in.get(reverse("catalog:detail", args=["alice-tune-2"])).content.decode()
    )


# --- every tool that takes a model by name -----------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("inspect:attention-api", {"model": "{name}", "text": "Hello world"}),
        ("inspect:next-token-api", {"model": "{name}", "text": "Hello world"}),
        ("inspect:logit-lens-api", {"model": "{name}", "text": "Hello world"}),
        ("inspect:tokenize-api", {"models": ["{name}"], "text": "Hello world"}),
        ("inspect:tokenize-api", {"models": ["model:{name}"], "text": "Hello world"}),
    ],
)
def test_each_json_endpoint_refuses_a_strangers_private_model_like_an_unknown_one(
    client_in: Client, stranger_in: Client, admin_in: Client, private: str, url: str, body: dict[str, Any]
) -> None:
    status, answer = same_as_unknown(stranger_in, "post", reverse(url), body)
    assert status == 400
    assert PRIVATE in answer["error"]
    assert "Unknown" in answer["error"]
    payload = json.dumps(body).replace("{name}", PRIVATE)
    for client in (client_in, admin_in):
        assert client.post(reverse(url), payload, content_type="application/json").status_code == 200


def test_the_tool_pages_refuse_it_and_never_offer_it(
    client_in: Client, stranger_in: Client, private: str
) -> None:
    posts = [(reverse("inspect:attention"), {"model": PRIVATE, "text": "Hello"}),
             (reverse("inspect:logit-lens"), {"model": PRIVATE, "text": "Hello"}),
             (reverse("inspect:next-token"), {"model": PRIVATE, "text": "Hello"}),
             (reverse("inspect:tokenize-chat"), {"model": PRIVATE, "user": "Hello"})]  # fmt: skip
    for url, form in posts:
        html = stranger_in.post(url, form).content.decode()
        assert f"Unknown model {PRIVATE}: pick one from the catalog." in html, url
        assert f"Unknown model {PRIVATE}" not in client_in.post(url, form).content.decode(), url
    # "Try it" links open a page on the model only for those who may use it; for anyone else the page
    # reads as it does for a name that is not in the catalog.
    links = ["/chat/?model={}", "/attention/?model={}", "/logit-lens/?model={}", "/next-token/?model={}",
             "/tokenize/?models={}"]  # fmt: skip
    for link in links:
        page = normalized(stranger_in.get(link.format(PRIVATE)).content.decode())
        assert page == normalized(stranger_in.get(link.format(UNKNOWN)).content.decode()).replace(
            UNKNOWN, PRIVATE
        )
        assert not re.search(f'value="(model:)?{PRIVATE}"', page), link
        assert re.search(
            f'value="(model:)?{PRIVATE}"', client_in.get(link.format(PRIVATE)).content.decode()
        ), link


def test_the_job_forms_do_not_offer_a_strangers_private_model(
    client_in: Client, stranger_in: Client, private: str
) -> None:

    for url in (reverse("jobs:new-quantize"), reverse("jobs:new-finetune")):
        assert f'value="{PRIVATE}"' not in stranger_in.get(url).content.decode(), url
        assert f'value="{PRIVATE}"' in client_in.get(url).content.decode(), url
    refused = stranger_in.post(reverse("jobs:new-quantize"), {"method": "bf16", "base_model": PRIVATE})
    unknown = stranger_in.post(reverse("jobs:new-quantize"), {"method": "bf16", "base_model": UNKNOWN})
    assert "Select a valid choice" in refused.content.decode()
    assert normalized(refused.content.decode()) == normalized(unknown.content.decode()).replace(
        UNKNOWN, PRIVATE
    )
    teacher = {"method": "distill", "base_model": "tiny-llama", "teacher_model": PRIVATE, "steps": 1}
    assert "Select a valid choice" in stranger_in.post(reverse("jobs:new-finetune"), teacher).content.decode()
    assert not Job.objects.exists()


def test_sharing_makes_it_usable_in_every_tool(client_in: Client, stranger_in: Client, private: str) -> None:
    share(client_in, PRIVATE, True)
    for url in ("inspect:logit-lens-api", "inspect:next-token-api"):
        response = stranger_in.post(
            reverse(url), json.dumps({"model": PRIVATE, "text": "Hello"}), content_type="application/json"
        )
        assert response.status_code == 200, response.content
    assert f'value="{PRIVATE}"' in stranger_in.get(reverse("jobs:new-quantize")).content.decode()
    share(client_in, PRIVATE, False)
    response = stranger_in.post(
        reverse("inspect:logit-lens-api"), json.dumps({"model": PRIVATE, "text": "Hello"}),
        content_type="application/json",
    )  # fmt: skip
    assert response.status_code == 400


def test_the_chat_send_form_refuses_it_and_says_so_for_a_conversation_on_it(
    user, stranger, private: str
) -> None:

    refused = send_form({"model": PRIVATE, "content": "hi"}, user=stranger)
    unknown = send_form({"model": UNKNOWN, "content": "hi"}, user=stranger)
    assert not refused.is_valid()
    assert not unknown.is_valid()
    assert refused.errors["model"][0] == unknown.errors["model"][0].replace(UNKNOWN, PRIVATE)
    assert send_form({"model": PRIVATE, "content": "hi"}, user=user).is_valid()
    assert (PRIVATE, PRIVATE) not in services.model_choices(stranger)
    # A conversation the stranger had while it was shared: going on names the model that is gone.
    form = send_form({"content": "again"}, {"model": PRIVATE}, user=stranger)
    assert not form.is_valid()
    assert form.errors["model"] == [
        f"{PRIVATE}, the model of this conversation, is no longer in the catalog (or no longer shared with "
        "you): pick another model to go on."
    ]


@pytest.mark.django_db(transaction=True)
def test_the_chat_socket_refuses_a_strangers_private_model_and_says_when_a_chats_model_was_unshared(
    user, stranger, private: str
) -> None:

    def send(name: str | None, **fields: Any) -> dict[str, Any]:
        frame = {"type": "send", "content": "Hello", "settings": {"max_new_tokens": 4, "seed": 1}, **fields}
        return frame if name is None else {**frame, "model": name}

    def talk(who, *frames: dict[str, Any]) -> list[list[dict[str, Any]]]:
        headers = headers_for(who)  # logging in is ORM work: not inside the event loop

        async def scenario() -> list[list[dict[str, Any]]]:
            communicator = await open_socket(headers)
            replies = []
            for frame in frames:
                await communicator.send_json_to(frame)
                first = await communicator.receive_json_from(timeout=30)
                while first["type"] == "loading":  # a model's first answer waits for it to load
                    first = await communicator.receive_json_from(timeout=30)
                rest = await frames_until(communicator, "done") if first["type"] == "started" else []
                replies.append([first, *rest])
            await communicator.disconnect()
            return replies

        return run(scenario())

    (refused,), (unknown,) = talk(stranger, send(PRIVATE), send(UNKNOWN))
    assert refused["type"] == "error"
    assert refused == json.loads(json.dumps(unknown).replace(UNKNOWN, PRIVATE))
    assert talk(user, send(PRIVATE))[0][-1]["type"] == "done", "its owner chats with it"

    set_shared(user, PRIVATE, True)
    ((started, *_, done),) = talk(stranger, send(PRIVATE))
    assert done["type"] == "done", "shared: the stranger may chat with it too"
    set_shared(user, PRIVATE, False)
    same = {"conversation": started["conversation"], "message": done["message"]}
    replies = talk(stranger, *(send(None, action=a, **same) for a in ("replay", "continue", "regenerate")))
    gone = f"{PRIVATE}, the model of this conversation, is no longer in the catalog (or no longer shared"
    assert [r[0]["type"] for r in replies] == ["error"] * 3
    assert all(r[0]["error"].startswith(gone) for r in replies), replies


# --- ownership comes from the store ------------------------------------------------------------------
def test_ownership_and_sharing_survive_a_catalog_rebuilt_from_the_store(
    client_in: Client, user, admin, private: str
) -> None:
    sync_catalog()
    ModelEntry.objects.all().delete()
    entry = next(e for e in sync_catalog() if e.name == PRIVATE)
    assert (entry.owner, entry.shared) == (user, False)
    assert ModelEntry.objects.get(name="tiny-llama").shared
    share(client_in, PRIVATE, True)
    ModelEntry.objects.all().delete()
    sync_catalog()
    assert ModelEntry.objects.get(name=PRIVATE).shared, "sharing is written into meta.json too"


def test_a_job_output_from_before_owners_belongs_to_its_jobs_owner(
    store, tiny_model, tiny_model_dir: Path, user, stranger, admin
) -> None:
    job = Job.objects.create(owner=user, kind="quantize", method="bf16", base_model="tiny-llama",
                             output_name="old-bf16", params={})  # fmt: skip
    store.import_folder(tiny_model_dir, "old-bf16", parent="tiny-llama", method="bf16", extra={"job": job.pk})
    store.import_folder(tiny_model_dir, "orphan", parent="tiny-llama", method="bf16", extra={"job": 999})
    entries = {e.name: e for e in sync_catalog()}
    assert (entries["old-bf16"].owner, entries["old-bf16"].shared) == (user, False)
    assert not may_see(stranger, entries["old-bf16"])
    assert entries["orphan"].owner is None
    assert not entries["orphan"].shared
    assert [may_see(u, entries["orphan"]) for u in (user, stranger, admin)] == [False, False, True]
    user.delete()
    assert not ModelEntry.objects.get(name="old-bf16").shared, "an owner's model never turns public"


def test_a_fine_tune_jobs_model_belongs_to_the_jobs_owner(
    user, stranger, tiny_model, tmp_path, settings
) -> None:

    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    dataset = save_dataset(user, INSTRUCTIONS, "pirate.jsonl")
    job = Job.objects.create(owner=user, kind="finetune", method="lora", base_model="tiny-llama",
                             output_name="tiny-pirate", dataset=dataset, task_id="t1",
                             params={"steps": 2, "batch_size": 2, "max_seq_len": 64})  # fmt: skip
    assert run_job(job.pk, "t1", "test@host") == "succeeded", Job.objects.get(pk=job.pk).error
    entry = ModelEntry.objects.get(name="tiny-pirate")
    assert (entry.owner, entry.shared) == (user, False)
    assert may_see(user, entry)
    assert not may_see(stranger, entry)
    meta = json.loads((Path(settings.MODEL_DIR) / "tiny-pirate" / "meta.json").read_text())
    assert (meta["extra"]["owner_id"], meta["extra"]["owner"], meta["extra"]["shared"]) == (
        user.pk,
        "alice",
        False,
    )


def test_healthz_names_a_loaded_private_model_only_to_those_who_may_see_it(
    client_in: Client, stranger_in: Client, admin_in: Client, private: str
) -> None:

    model_cache().get(private)
    try:
        seen = {
            who: [m["name"] for m in client.get("/healthz").json()["loaded_models"]]
            for who, client in (("owner", client_in), ("stranger", stranger_in), ("admin", admin_in))
        }
    finally:
        model_cache().clear()
    assert seen == {"owner": [private], "stranger": [], "admin": [private]}
