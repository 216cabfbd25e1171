"""An import copies real files only: a symbolic link among the files it reads or copies is refused with a
message naming it, and nothing is left in the store (the GGUF and adapter downloads serve what it holds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from llmcore.store import ModelStore, StoreError
from tests.conftest import ROOT, site_env

SECRET = b"the contents of a file outside the model folder\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file and a folder elsewhere on the machine, that an import must never copy."""
    folder = tmp_path / "elsewhere"
    (folder / "adapter").mkdir(parents=True)
    (folder / "secret.txt").write_bytes(SECRET)
    (folder / "adapter" / "adapter_config.json").write_bytes(SECRET)
    return folder


@pytest.fixture
def model_folder(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """The tiny model with what a fine-tune or an export adds: a GGUF file and a peft adapter."""
    folder = tmp_path / "to-import"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "export.gguf").write_bytes(b"GGUF not really")
    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return folder


def link_file(folder: Path, name: str, target: Path) -> None:
    path = folder / name
    path.unlink(missing_ok=True)
    path.symlink_to(target)


def link_to_a_file(folder: Path, outside: Path) -> str:
    link_file(folder, "export.gguf", outside / "secret.txt")
    return "export.gguf"


def link_from_the_tokenizer_files(folder: Path, outside: Path) -> str:
    link_file(folder, "special_tokens_map.json", outside / "secret.txt")
    return "special_tokens_map.json"


def link_in_the_adapter(folder: Path, outside: Path) -> str:
    link_file(folder, "adapter/adapter_config.json", outside / "secret.txt")
    return "adapter/adapter_config.json"


def link_to_a_folder(folder: Path, outside: Path) -> str:
    shutil.rmtree(folder / "adapter")
    (folder / "adapter").symlink_to(outside / "adapter", target_is_directory=True)
    return "adapter"


def link_chain(folder: Path, outside: Path) -> str:
    hop = folder.parent / "hop"  # link -> link -> the file outside
    hop.symlink_to(outside / "secret.txt")
    link_file(folder, "tokenizer_config.json", hop)
    return "tokenizer_config.json"


def link_inside_the_folder(folder: Path, outside: Path) -> str:
    link_file(folder, "generation_config.json", folder / "config.json")
    return "generation_config.json"


LINKS = [
    link_to_a_file,
    link_from_the_tokenizer_files,
    link_in_the_adapter,
    link_to_a_folder,
    link_chain,
    link_inside_the_folder,
]


def assert_store_untouched(root: Path) -> None:
    assert not root.exists() or not list(root.iterdir()), list(root.iterdir())


def test_the_same_folder_without_links_imports_with_its_gguf_and_adapter(
    store: ModelStore, model_folder: Path
) -> None:
    store.import_folder(model_folder, "fine")
    assert (store.path("fine") / "export.gguf").read_bytes() == b"GGUF not really"
    assert (store.path("fine") / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize("make_link", LINKS, ids=lambda f: f.__name__)
def test_it_refuses_a_folder_with_a_symbolic_link(
    store: ModelStore, model_folder: Path, outside: Path, make_link: Callable[[Path, Path], str]
) -> None:
    name = make_link(model_folder, outside)
    with pytest.raises(StoreError, match="symbolic link") as refused:
        store.import_folder(model_folder, "linked")
    assert f"Refused: {name} is a symbolic link" in str(refused.value)
    assert not store.exists("linked")
    assert_store_untouched(store.root)


def test_it_refuses_a_seed_model_with_a_symbolic_link(
    tmp_path: Path, store: ModelStore, model_folder: Path, outside: Path
) -> None:
    seed = ModelStore(tmp_path / "seed")
    seed.import_folder(model_folder, "seeded")
    link_file(seed.path("seeded"), "export.gguf", outside / "secret.txt")
    with pytest.raises(StoreError, match="Refused: export.gguf is a symbolic link"):
        store.import_copy(seed, "seeded")
    assert_store_untouched(store.root)


def test_it_refuses_a_seed_model_whose_adapter_is_a_link(
    tmp_path: Path, store: ModelStore, model_folder: Path, outside: Path
) -> None:
    seed = ModelStore(tmp_path / "seed")
    seed.import_folder(model_folder, "seeded")
    link_to_a_folder(seed.path("seeded"), outside)
    with pytest.raises(StoreError, match="Refused: adapter is a symbolic link"):
        store.import_copy(seed, "seeded")
    assert_store_untouched(store.root)


@pytest.mark.django_db
@pytest.mark.parametrize("make_link", [link_to_a_file, link_to_a_folder], ids=lambda f: f.__name__)
def test_the_models_command_refuses_a_link_with_its_name(
    model_dir: Path, model_folder: Path, outside: Path, make_link: Callable[[Path, Path], str]
) -> None:
    name = make_link(model_folder, outside)
    with pytest.raises(CommandError, match=f"Refused: {name} is a symbolic link"):
        call_command("models", "import", str(model_folder), "--name", "linked")
    assert_store_untouched(model_dir)


def test_manage_py_models_import_exits_non_zero_on_a_link_chain(
    tmp_path: Path, model_folder: Path, outside: Path
) -> None:
    link_chain(model_folder, outside)
    data_dir = tmp_path / "data"
    env = site_env(data_dir)
    result = subprocess.run(
        [sys.executable, "manage.py", "models", "import", str(model_folder), "--name", "linked"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Refused: tokenizer_config.json is a symbolic link" in result.stderr
    assert "Traceback" not in result.stderr
    assert_store_untouched(data_dir / "models")
    assert os.path.islink(model_folder / "tokenizer_config.json")  # the source is left as it was
