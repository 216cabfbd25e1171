"""A job's output opens at once in chat, the tokenizer lab and the attention explorer: each page takes the
model a link names (and ignores a name the catalog does not have)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def selected(html: str, select_name: str) -> list[str]:
    """The selected option values (or checked boxes) of a form control named select_name."""
    block = re.search(rf'<select[^>]*name="{select_name}"[^>]*>(.*?)</select>', html, re.S)
    if block:
        return re.findall(r'<option value="([^"]*)"[^>]*\bselected\b', block.group(1))
    return re.findall(rf'<input[^>]*name="{select_name}"[^>]*value="([^"]*)"[^>]*\bchecked\b', html)


@pytest.fixture
def child(store, tiny_model, tiny_model_dir: Path) -> str:
    store.import_folder(tiny_model_dir, "tiny-child", parent="tiny-llama", method="lora")
    return "tiny-child"


@pytest.mark.parametrize(
    ("path", "field"),
    [("/chat/?model={}", "model"), ("/attention/?model={}", "model"), ("/tokenize/?models={}", "models")],
)
def test_a_link_opens_the_page_on_the_named_model(
    client_in: Client, child: str, path: str, field: str
) -> None:
    # The tokenizer lab names its choices by kind ("model:<name>", "trained:<id>").
    names = [
        value.removeprefix("model:")
        for value in selected(client_in.get(path.format(child)).content.decode(), field)
    ]
    assert names == [child]
    unknown = client_in.get(path.format("no-such-model"))
    assert unknown.status_code == 200
    assert "no-such-model" not in " ".join(selected(unknown.content.decode(), field))
