from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from playground.catalog.models import ModelEntry

pytestmark = pytest.mark.django_db


def fact(html: str, name: str) -> str:
    match = re.search(rf'data-fact="{name}">([^<]*)<', html)
    assert match, f"no {name} fact on the page"
    return match.group(1).strip()


def test_the_list_shows_the_facts_people_compare(client_in: Client, tiny_model) -> None:  # type: ignore[no-untyped-def]
    html = client_in.get(reverse("catalog:list")).content.decode()
    assert "tiny-llama" in html
    assert (fact(html, "layers"), fact(html, "heads"), fact(html, "kv_heads")) == ("2", "4", "2")
    assert (fact(html, "hidden"), fact(html, "context")) == ("64", "256")
    assert fact(html, "vocab") == str(tiny_model.facts.vocab_size)
    assert "float32" in html
    assert "MIT" in html


def test_the_detail_page_shows_provenance_and_grouped_query_attention(client_in: Client, tiny_model) -> None:  # type: ignore[no-untyped-def]
    html = client_in.get(reverse("catalog:detail", args=["tiny-llama"])).content.decode()
    assert tiny_model.sha256 in html
    assert "grouped-query attention: each key/value head serves 2 query heads" in html
    assert "decoder only, causal attention" in html


def test_lineage_links_parent_and_child(client_in: Client, store, tiny_model, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    store.import_folder(tiny_model_dir, "tiny-lora", parent="tiny-llama", method="finetune-lora")
    html = client_in.get(reverse("catalog:detail", args=["tiny-lora"])).content.decode()
    assert 'href="/models/tiny-llama/"' in html
    assert ModelEntry.objects.get(name="tiny-lora").parent.name == "tiny-llama"
    parent_html = client_in.get(reverse("catalog:detail", args=["tiny-llama"])).content.decode()
    assert 'href="/models/tiny-lora/"' in parent_html


def test_an_unknown_model_is_a_404(client_in: Client, model_dir) -> None:  # type: ignore[no-untyped-def]
    response = client_in.get(reverse("catalog:detail", args=["nope"]))
    assert response.status_code == 404
    assert "No model named &#x27;nope&#x27;" in response.content.decode()


def test_the_htmx_filter_returns_only_the_matching_rows(
    client_in: Client,
    store,
    tiny_model,  # type: ignore[no-untyped-def]
    tiny_model_dir,
) -> None:
    store.import_folder(tiny_model_dir, "other-model")
    response = client_in.get(reverse("catalog:list"), {"q": "other"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html  # just the partial
    assert 'href="/models/other-model/"' in html
    assert 'href="/models/tiny-llama/"' not in html


def test_the_catalog_follows_the_store_on_disk(client_in: Client, store, tiny_model) -> None:  # type: ignore[no-untyped-def]
    assert "tiny-llama" in client_in.get(reverse("catalog:list")).content.decode()
    shutil.rmtree(store.path("tiny-llama"))
    html = client_in.get(reverse("catalog:list")).content.decode()
    assert "tiny-llama" not in html
    assert "No models yet" in html
    assert not ModelEntry.objects.exists()


def test_model_names_are_escaped_on_the_page(client_in: Client, store, tiny_model) -> None:  # type: ignore[no-untyped-def]
    html = client_in.get(reverse("catalog:list"), {"q": "<script>alert(1)</script>"}).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_models_commands_import_list_and_remove(store, tiny_model_dir: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("models", "import", str(tiny_model_dir), "--name", "cli-model")
    call_command("models", "list")
    out = capsys.readouterr().out
    assert "Imported cli-model" in out
    assert re.search(r"cli-model\s+llama", out)
    assert ModelEntry.objects.filter(name="cli-model").exists()
    call_command("models", "remove", "cli-model")
    assert not store.exists("cli-model")
    assert not ModelEntry.objects.filter(name="cli-model").exists()


def test_models_commands_refuse_bad_input_with_a_clear_message(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"pickle")
    with pytest.raises(CommandError, match="pickle checkpoint"):
        call_command("models", "import", str(checkpoint))
    with pytest.raises(CommandError, match="No model named 'ghost'"):
        call_command("models", "remove", "ghost")
    with pytest.raises(CommandError, match="Invalid model name"):
        call_command("models", "remove", "../etc")
    with pytest.raises(CommandError, match="Unknown model 'nope'"):
        call_command("models", "pull", "nope")


def test_a_parent_cannot_be_removed_before_its_children(store, tiny_model, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    store.import_folder(tiny_model_dir, "child", parent="tiny-llama", method="finetune-sft")
    with pytest.raises(CommandError, match="parent of child"):
        call_command("models", "remove", "tiny-llama")
    assert store.exists("tiny-llama")
