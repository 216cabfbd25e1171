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


def test_the_list_shows_the_facts_people_compare(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("catalog:list"), {"columns": "1", "col": "all"}).content.decode()
    assert "tiny-llama" in html
    assert (fact(html, "layers"), fact(html, "heads"), fact(html, "kv_heads")) == ("2", "4", "2")
    assert (fact(html, "hidden"), fact(html, "context")) == ("64", "256")
    assert fact(html, "vocab") == str(tiny_model.facts.vocab_size)
    assert "float32" in html
    assert "MIT" in html


def test_the_detail_page_shows_provenance_and_grouped_query_attention(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("catalog:detail", args=["tiny-llama"])).content.decode()
    assert tiny_model.sha256 in html
    assert "grouped-query attention: each key/value head serves 2 query heads" in html
    assert "decoder only, causal attention" in html


def test_lineage_links_parent_and_child(client_in: Client, store, tiny_model, tiny_model_dir) -> None:
    store.import_folder(tiny_model_dir, "tiny-lora", parent="tiny-llama", method="finetune-lora")
    html = client_in.get(reverse("catalog:detail", args=["tiny-lora"])).content.decode()
    assert 'href="/models/tiny-llama/"' in html
    assert ModelEntry.objects.get(name="tiny-lora").parent.name == "tiny-llama"
    parent_html = client_in.get(reverse("catalog:detail", args=["tiny-llama"])).content.decode()
    assert 'href="/models/tiny-lora/"' in parent_html


def test_an_unknown_model_is_a_404(client_in: Client, model_dir) -> None:
    response = client_in.get(reverse("catalog:detail", args=["nope"]))
    assert response.status_code == 404
    assert "No model named &#x27;nope&#x27;" in response.content.decode()


def test_the_htmx_filter_returns_only_the_matching_rows(
    client_in: Client,
    store,
    tiny_model,
    tiny_model_dir,
) -> None:
    store.import_folder(tiny_model_dir, "other-model")
    response = client_in.get(reverse("catalog:list"), {"q": "other"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html  # just the partial
    assert 'href="/models/other-model/"' in html
    assert 'href="/models/tiny-llama/"' not in html


def test_the_catalog_follows_the_store_on_disk(client_in: Client, store, tiny_model) -> None:
    assert "tiny-llama" in client_in.get(reverse("catalog:list")).content.decode()
    shutil.rmtree(store.path("tiny-llama"))
    html = client_in.get(reverse("catalog:list")).content.decode()
    assert "tiny-llama" not in html
    assert "No models yet" in html
    assert not ModelEntry.objects.exists()


def test_model_names_are_escaped_on_the_page(client_in: Client, store, tiny_model) -> None:
    html = client_in.get(reverse("catalog:list"), {"q": "<script>alert(1)</script>"}).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_models_commands_import_list_and_remove(store, tiny_model_dir: Path, capsys) -> None:
    call_command("models", "import", str(tiny_model_dir), "--name", "cli-model")
    call_command("models", "list")
    out = capsys.readouterr().out
    assert "Imported cli-model" in out
    assert re.search(r"cli-model\s+llama", out)
    assert ModelEntry.objects.filter(name="cli-model").exists()
    call_command("models", "remove", "cli-model")
    assert not store.exists("cli-model")
    assert not ModelEntry.objects.filter(name="cli-model").exists()


def test_models_commands_refuse_bad_input_with_a_clear_message(store, tmp_path: Path) -> None:
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


def test_a_parent_cannot_be_removed_before_its_children(store, tiny_model, tiny_model_dir) -> None:
    store.import_folder(tiny_model_dir, "child", parent="tiny-llama", method="finetune-sft")
    with pytest.raises(CommandError, match="parent of child"):
        call_command("models", "remove", "tiny-llama")
    assert store.exists("tiny-llama")


def row_of(html: str, name: str) -> str:
    """The table row of one model on the list page."""
    match = re.search(rf'<tr>\s*<td><a href="/models/{re.escape(name)}/">.*?</tr>', html, re.S)
    assert match, f"no row for {name}"
    return match.group(0)


def squash(text: str) -> str:
    return " ".join(text.split())


def test_the_list_shows_how_attention_and_positions_differ(
    client_in: Client, store, tiny_model, tiny_gemma3_dir, tiny_bert_dir
) -> None:
    store.import_folder(tiny_gemma3_dir, "tiny-gemma3")
    store.import_folder(tiny_bert_dir, "tiny-bert")
    html = client_in.get(reverse("catalog:list"), {"columns": "1", "col": "all"}).content.decode()
    llama, gemma, bert = (row_of(html, n) for n in ("tiny-llama", "tiny-gemma3", "tiny-bert"))
    assert (fact(llama, "attention"), fact(llama, "positional")) == ("causal", "RoPE")
    assert (fact(gemma, "attention"), fact(gemma, "kv_heads")) == ("causal", "1")
    assert "window 8 on 5/6" in gemma
    assert "window" not in llama
    assert (fact(bert, "attention"), fact(bert, "positional")) == ("bidirectional", "learned absolute")


def test_the_detail_page_explains_sliding_windows_and_multi_query_attention(
    client_in: Client, store, tiny_gemma3_dir
) -> None:
    store.import_folder(tiny_gemma3_dir, "tiny-gemma3")
    html = client_in.get(reverse("catalog:detail", args=["tiny-gemma3"])).content.decode()
    assert (
        squash(fact(html, "sliding_window"))
        == "8 tokens on 5 of 6 layers (the other 1 layer sees the whole context)"
    )
    assert "multi-query attention: all 4 query heads share one key/value head" in squash(html)
    assert fact(html, "head_dim") == "16"
    assert (
        squash(fact(html, "positional"))
        == "rotary (RoPE), base θ = 1,000,000 (10,000 on the sliding-window layers)"
    )
    assert fact(html, "tied") == "tied: the output layer reuses the input embedding matrix"


def test_the_detail_page_of_an_encoder_says_bidirectional_and_learned_positions(
    client_in: Client, store, tiny_bert_dir
) -> None:
    store.import_folder(tiny_bert_dir, "tiny-bert")
    html = client_in.get(reverse("catalog:detail", args=["tiny-bert"])).content.decode()
    assert (
        squash(fact(html, "kind"))
        == "encoder only, bidirectional attention (every token sees every other token)"
    )
    assert fact(html, "positional") == "learned absolute position embeddings, up to 40 positions"
    assert squash(fact(html, "sliding_window")) == "none: every layer sees the whole context"
    assert fact(html, "tied") == "no output layer (an encoder)"
    assert "License terms" not in html


def test_the_detail_page_shows_the_license_terms_a_model_came_with(
    client_in: Client, store, tiny_model_dir
) -> None:
    terms = "Section 1: USE\n\nYou must not use <b>Toy</b> for evil.\n\n• not for spam"
    store.import_folder(
        tiny_model_dir,
        "toy",
        license="Toy Terms of Use",
        extra={
            "license_terms": terms,
            "license_terms_source": "TERMS.html in toy==1.0",
            "license_url": "https://example.org/toy/terms",
            "license_notice": "Toy is provided under and subject to the Toy Terms of Use",
        },
    )
    html = client_in.get(reverse("catalog:detail", args=["toy"])).content.decode()
    section = html[html.index('id="license-terms"') :]
    assert "<h2>License terms</h2>" in section
    assert '<a href="https://example.org/toy/terms" rel="noopener noreferrer">Toy Terms of Use</a>' in section
    assert "Notice:</strong> Toy is provided under and subject to the Toy Terms of Use" in section
    assert "from TERMS.html in toy==1.0" in section
    assert "You must not use &lt;b&gt;Toy&lt;/b&gt; for evil.\n\n• not for spam" in section
    assert fact(html, "license") == "Toy Terms of Use"


def test_a_license_link_that_is_not_https_is_not_linked(client_in: Client, store, tiny_model_dir) -> None:
    store.import_folder(tiny_model_dir, "toy", license="Odd", extra={"license_url": "javascript:alert(1)"})
    html = client_in.get(reverse("catalog:detail", args=["toy"])).content.decode()
    assert "javascript:" not in html
    assert "is distributed under Odd." in html


def test_older_catalog_rows_catch_up_with_newer_facts(client_in: Client, store, tiny_model) -> None:
    client_in.get(reverse("catalog:list"))
    # A row written before these facts existed, as the migration leaves it.
    ModelEntry.objects.filter(name="tiny-llama").update(head_dim=None, positional="", meta={"extra": {}})
    html = client_in.get(reverse("catalog:detail", args=["tiny-llama"])).content.decode()
    assert fact(html, "head_dim") == "16"
    assert ModelEntry.objects.get(name="tiny-llama").positional == "RoPE"


def test_pullable_lists_the_new_models(capsys) -> None:
    call_command("models", "pullable")
    out = capsys.readouterr().out
    assert re.search(r"^gemma-3-270m\s+Gemma Terms of Use\s+Gemma 3 270M", out, re.M)
    assert re.search(r"^minilm\s+Apache-2.0\s+all-MiniLM-L6-v2", out, re.M)
    assert re.search(r"^smollm2-135m-instruct\s+Apache-2.0", out, re.M)


@pytest.mark.parametrize(
    "page", ["inspect:tokenize", "inspect:attention", "inspect:next-token", "jobs:new-finetune"]
)
def test_a_page_reads_the_store_once_however_many_fields_list_models(
    client_in: Client, tiny_model, monkeypatch, page: str
) -> None:
    """The tokenizer lab lists the catalog in its model fields, its trained-tokenizer choices and its
    default model: seven reads of the store's folders per page view before there was one snapshot per
    request, one now (the attention, next-token and fine-tune pages: four, four and one)."""
    from llmcore.store import ModelStore

    reads = []
    real = ModelStore.list
    monkeypatch.setattr(ModelStore, "list", lambda self: reads.append(1) or real(self))
    response = client_in.get(reverse(page))
    assert response.status_code == 200
    assert "tiny-llama" in response.content.decode()
    assert len(reads) == 1
    reads.clear()
    client_in.get(reverse(page))
    assert len(reads) == 1, "the next request takes a fresh snapshot"


def headers(html: str) -> list[str]:
    head = re.search(r"<thead>(.*?)</thead>", html, re.S)
    assert head, "no table head"
    return [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", head.group(1))]


def test_the_list_shows_fewer_columns_until_the_user_chooses_and_remembers_the_choice(
    client_in: Client, tiny_model
) -> None:
    from playground.catalog.views import COLUMNS, DEFAULT_COLUMNS

    shown = headers(client_in.get(reverse("catalog:list")).content.decode())
    assert shown == ["Name", *(COLUMNS[key] for key in DEFAULT_COLUMNS)]
    assert "Vocabulary" not in shown
    assert "Source" not in shown
    chosen = client_in.get(reverse("catalog:list"), {"columns": "1", "col": ["vocab", "layers", "nope"]})
    html = chosen.content.decode()
    assert headers(html) == ["Name", "Layers", "Vocabulary"]  # in the table's order; unknown names dropped
    row = row_of(html, "tiny-llama")
    assert row.count("<td") == 3
    assert fact(row, "vocab") == str(tiny_model.facts.vocab_size)
    # the next visit (and the htmx filter's rows) keep the choice
    assert headers(client_in.get(reverse("catalog:list")).content.decode()) == [
        "Name",
        "Layers",
        "Vocabulary",
    ]
    rows = client_in.get(
        reverse("catalog:list"), {"q": "tiny"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert rows.count("<td") == 3
    assert (
        len(headers(client_in.get(reverse("catalog:list"), {"columns": "1", "col": "all"}).content.decode()))
        == 16
    )
    none = client_in.get(reverse("catalog:list"), {"columns": "1"}).content.decode()
    assert headers(none) == ["Name"]
    assert 'href="/models/tiny-llama/"' in none


def kind_of(html: str) -> str:
    match = re.search(r'data-kind="([^"]+)"', html)
    assert match, "no kind badge"
    return match.group(1)


def test_each_model_is_badged_as_what_it_is(client_in: Client, store, tiny_model, tiny_model_dir) -> None:
    made = {"job": 1, "owner_id": None, "shared": True}
    store.import_folder(
        tiny_model_dir,
        "tiny-int8",
        parent="tiny-llama",
        method="int8_weight",
        extra={**made, "kind": "quantize"},
    )
    store.import_folder(
        tiny_model_dir, "tiny-lora", parent="tiny-llama", method="lora", extra={**made, "kind": "finetune"}
    )
    store.import_folder(
        tiny_model_dir,
        "tiny-distill",
        parent="tiny-llama",
        method="distill",
        extra={**made, "kind": "finetune"},
    )
    expected = {
        "tiny-llama": "imported",
        "tiny-int8": "quantized",
        "tiny-lora": "fine-tuned",
        "tiny-distill": "distilled",
    }
    html = client_in.get(reverse("catalog:list")).content.decode()
    for name, kind in expected.items():
        assert kind_of(row_of(html, name)) == kind, name
        detail = client_in.get(reverse("catalog:detail", args=[name])).content.decode()
        assert kind_of(detail) == kind, name
    assert ModelEntry.objects.get(name="tiny-int8").kind_help.startswith("its parent's weights")


def test_a_pulled_model_is_a_base_model(client_in: Client, store, tiny_model_dir) -> None:
    from llmcore.pulls import DEFAULT_MODEL, PULLABLE

    source = PULLABLE[DEFAULT_MODEL].source_label
    store.import_folder(tiny_model_dir, DEFAULT_MODEL, source_label=source)
    store.import_folder(tiny_model_dir, "look-alike", source_label=source)  # not a pullable name
    html = client_in.get(reverse("catalog:list")).content.decode()
    assert kind_of(row_of(html, DEFAULT_MODEL)) == "base"
    assert kind_of(row_of(html, "look-alike")) == "imported"


def tools(html: str) -> dict[str, str]:
    nav = re.search(r'<nav [^>]*id="tools".*?</nav>', html, re.S)
    assert nav, "no tools on the model page"
    links = dict(
        (label, href.replace("&amp;", "&"))
        for href, label in re.findall(r'<a href="([^"]+)">([^<]+)</a>', nav.group(0))
    )
    refused = re.findall(r'<span class="off">([^<]+)</span>', nav.group(0))
    return {**links, **{label: "" for label in refused}}


def test_a_model_page_links_to_every_tool_opened_on_it(
    client_in: Client, store, tiny_model, tiny_bert_dir
) -> None:
    links = tools(client_in.get(reverse("catalog:detail", args=["tiny-llama"])).content.decode())
    assert links == {
        "Chat": "/chat/?model=tiny-llama",
        "Tokenizer": "/tokenize/?models=tiny-llama",
        "Attention": "/attention/?model=tiny-llama",
        "Next token": "/next-token/?model=tiny-llama",
        "Logit lens": "/logit-lens/?model=tiny-llama",
        "Fine-tune": "/jobs/new/finetune/?base_model=tiny-llama",
        "Quantize": "/jobs/new/quantize/?base_model=tiny-llama",
    }
    # each link opens its tool on the model
    for label, url in links.items():
        page = client_in.get(url)
        assert page.status_code == 200, label
        assert re.search(r'<option value="tiny-llama"[^>]*selected', page.content.decode()) or label in {
            "Chat",
            "Tokenizer",
        }, label
    store.import_folder(tiny_bert_dir, "tiny-bert")
    bert = tools(client_in.get(reverse("catalog:detail", args=["tiny-bert"])).content.decode())
    assert bert["Attention"] == "/attention/?model=tiny-bert"
    assert bert["Tokenizer"]
    assert all(bert[label] == "" for label in ("Chat", "Next token", "Logit lens", "Fine-tune", "Quantize"))
