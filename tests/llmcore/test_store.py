from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmcore.store import META_FILE, ModelStore, StoreError, sha256_files


def test_import_folder_writes_weights_tokenizer_config_and_meta(
    store: ModelStore, tiny_model_dir: Path
) -> None:
    meta = store.import_folder(tiny_model_dir, "tiny", license="MIT")
    folder = store.path("tiny")
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", META_FILE} <= names
    on_disk = json.loads((folder / META_FILE).read_text())
    assert on_disk["name"] == "tiny"
    assert on_disk["license"] == "MIT"
    assert on_disk["parent"] is None
    assert on_disk["method"] == "import"
    assert on_disk["created"]
    assert on_disk["sha256"] == sha256_files([folder / "model.safetensors"]) == meta.sha256


def test_facts_describe_the_tiny_architecture(store: ModelStore, tiny_model_dir: Path) -> None:
    facts = store.import_folder(tiny_model_dir, "tiny").facts
    assert facts is not None
    assert (facts.family, facts.layers, facts.attention_heads, facts.kv_heads) == ("llama", 2, 4, 2)
    assert facts.hidden_size == 64
    assert facts.context_length == 256
    assert facts.dtype == "float32"
    assert not facts.is_encoder_only
    # Tied embeddings are stored once: embeddings + per layer (4 attention + 3 MLP + 2 norms) + final norm.
    vocab = facts.vocab_size
    per_layer = 64 * 64 * 2 + 64 * 32 * 2 + 64 * 128 * 3 + 64 * 2
    assert facts.parameters == vocab * 64 + 2 * per_layer + 64
    assert facts.size_bytes > facts.parameters * 4


def test_list_and_remove(store: ModelStore, tiny_model_dir: Path) -> None:
    store.import_folder(tiny_model_dir, "a")
    store.import_folder(tiny_model_dir, "b", parent="a", method="finetune-lora")
    assert [m.name for m in store.list()] == ["a", "b"]
    assert store.meta("b").parent == "a"
    store.remove("a")
    assert [m.name for m in store.list()] == ["b"]
    assert not store.path("a").exists()


def test_importing_over_an_existing_name_is_refused(store: ModelStore, tiny_model_dir: Path) -> None:
    store.import_folder(tiny_model_dir, "tiny")
    with pytest.raises(StoreError, match="already exists"):
        store.import_folder(tiny_model_dir, "tiny")


def test_unknown_parent_is_refused(store: ModelStore, tiny_model_dir: Path) -> None:
    with pytest.raises(StoreError, match="Parent model 'nope'"):
        store.import_folder(tiny_model_dir, "child", parent="nope")


@pytest.mark.parametrize("name", ["../evil", "a/b", "/etc", "..", ".hidden", "UPPER", "", "x" * 65, "a\\b"])
def test_names_can_never_escape_the_store(store: ModelStore, name: str) -> None:
    with pytest.raises(StoreError, match="Invalid model name"):
        store.path(name)


def test_pickle_checkpoints_are_refused_with_a_clear_message(
    store: ModelStore, tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(StoreError, match="pickle checkpoint.*safetensors"):
        store.import_folder(folder, "pickled")
    assert store.list() == []


def test_pickle_files_beside_safetensors_are_left_behind(
    store: ModelStore, tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder = tmp_path / "both"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    store.import_folder(folder, "both")
    assert not (store.path("both") / "pytorch_model.bin").exists()


@pytest.mark.parametrize("how", ["auto_map", "python_file"])
def test_folders_that_need_custom_code_are_refused(
    store: ModelStore, tmp_path: Path, tiny_model_dir: Path, how: str
) -> None:
    folder = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, folder)
    if how == "auto_map":
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
        (folder / "config.json").write_text(json.dumps(config))
    else:
        (folder / "modeling_x.py").write_text("import os\n")
    with pytest.raises(StoreError, match="needs custom code"):
        store.import_folder(folder, "custom")


def test_a_failed_import_leaves_no_half_written_model(
    store: ModelStore, tmp_path: Path, tiny_model_dir: Path
) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(Exception):  # noqa: B017 - whatever safetensors raises, nothing may remain
        store.import_folder(folder, "broken")
    assert store.list() == []
    assert list(store.root.iterdir()) == []


def test_import_copy_from_a_seed_store_keeps_metadata(
    store: ModelStore, tmp_path: Path, tiny_model_dir: Path
) -> None:
    seed = ModelStore(tmp_path / "seed")
    original = seed.import_folder(tiny_model_dir, "tiny", license="MIT", source_label="somewhere")
    copied = store.import_copy(seed, "tiny")
    assert (copied.license, copied.source, copied.sha256) == ("MIT", "somewhere", original.sha256)
    assert store.exists("tiny")


def test_facts_say_how_attention_and_positions_work(store: ModelStore, tiny_model_dir: Path) -> None:
    facts = store.import_folder(tiny_model_dir, "tiny").facts
    assert facts is not None
    assert facts.attention == "causal"
    assert (facts.sliding_window, facts.sliding_window_layers) == (None, 0)
    assert facts.head_dim == 64 // 4
    assert (facts.intermediate_size, facts.activation) == (128, "silu")
    assert facts.tie_word_embeddings is True
    assert (facts.positional, facts.rope_theta, facts.rope_theta_sliding) == ("RoPE", 10000.0, None)


def test_facts_count_the_sliding_window_layers_of_gemma3(store: ModelStore, tiny_gemma3_dir: Path) -> None:
    facts = store.import_folder(tiny_gemma3_dir, "tiny-gemma3").facts
    assert facts is not None
    assert (facts.family, facts.attention) == ("gemma3_text", "causal")
    assert (facts.sliding_window, facts.sliding_window_layers, facts.layers) == (8, 5, 6)
    assert (facts.attention_heads, facts.kv_heads, facts.head_dim, facts.hidden_size) == (4, 1, 16, 32)
    # Windowed layers rotate with a smaller base than the full-attention ones.
    assert (facts.positional, facts.rope_theta, facts.rope_theta_sliding) == ("RoPE", 1_000_000.0, 10_000.0)


def test_facts_of_an_encoder_say_bidirectional_and_learned_positions(
    store: ModelStore, tiny_bert_dir: Path
) -> None:
    facts = store.import_folder(tiny_bert_dir, "tiny-bert").facts
    assert facts is not None
    assert facts.is_encoder_only is True
    assert facts.attention == "bidirectional"
    assert (facts.positional, facts.rope_theta) == ("learned absolute", None)
    assert facts.context_length == 40
    assert facts.tie_word_embeddings is None  # no output layer to tie


def test_an_older_meta_json_loads_and_gets_the_new_facts_once(
    store: ModelStore, tiny_model_dir: Path
) -> None:
    store.import_folder(tiny_model_dir, "tiny")
    meta_path = store.path("tiny") / META_FILE
    data = json.loads(meta_path.read_text())
    old_keys = {
        "family", "architecture", "parameters", "layers", "attention_heads", "kv_heads", "hidden_size",
        "vocab_size", "context_length", "dtype", "size_bytes", "is_encoder_only",
    }  # fmt: skip
    data["facts"] = {k: v for k, v in data["facts"].items() if k in old_keys}
    data["facts"]["a_fact_from_a_newer_version"] = 1  # tolerated, not fatal
    meta_path.write_text(json.dumps(data))

    from llmcore.store import ModelMeta

    old = ModelMeta.from_dict(json.loads(meta_path.read_text()))
    assert old.facts is not None
    assert (old.facts.facts_version, old.facts.head_dim, old.facts.attention) == (1, None, "causal")

    meta = store.meta("tiny")
    assert meta.facts is not None
    assert (meta.facts.head_dim, meta.facts.positional) == (16, "RoPE")
    on_disk = json.loads(meta_path.read_text())["facts"]
    assert on_disk["head_dim"] == 16, "the refreshed facts are kept"
    assert on_disk["size_bytes"] == meta.facts.size_bytes == old.facts.size_bytes
    assert [p.name for p in store.path("tiny").iterdir() if p.name.startswith(".")] == []


def lose_the_race_for(name: str, store: ModelStore, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the next import reads its facts, another import of `name` finishes first (two pulls at once)."""
    import llmcore.store as store_module

    real = store_module.read_facts

    def facts_while_another_lands(folder: Path):
        monkeypatch.setattr(store_module, "read_facts", real)
        store.import_folder(source, name)
        return real(folder)

    monkeypatch.setattr(store_module, "read_facts", facts_while_another_lands)


def test_an_import_that_loses_the_race_for_its_name_is_refused_and_leaves_nothing(
    store: ModelStore, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmcore.store import ModelExists

    lose_the_race_for("tiny", store, tiny_model_dir, monkeypatch)
    with pytest.raises(ModelExists, match="'tiny' already exists"):
        store.import_folder(tiny_model_dir, "tiny")
    assert [m.name for m in store.list()] == ["tiny"]
    assert sorted(p.name for p in store.root.iterdir()) == ["tiny"]  # no half-written copy


def test_a_pull_that_loses_the_race_returns_the_model_the_other_pull_added(
    store: ModelStore, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmcore.pulls import DEFAULT_MODEL, pull

    seed = ModelStore(tmp_path / "seed")
    seed.import_folder(tiny_model_dir, DEFAULT_MODEL)
    lose_the_race_for(DEFAULT_MODEL, store, tiny_model_dir, monkeypatch)
    meta, added = pull(DEFAULT_MODEL, store, tmp_path / "cache", seed_store=seed)
    assert (meta.name, added) == (DEFAULT_MODEL, False)
    assert [m.name for m in store.list()] == [DEFAULT_MODEL]
