"""A job's output on its catalog page: the quantize report as a table and chart, and the files a user can
take elsewhere (a GGUF export, a fine-tune's peft adapter)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from playground.catalog.services import owner_extra

pytestmark = pytest.mark.django_db

REPORT = {
    "summary": "2.4x smaller, 0.6 % higher perplexity, 1.4x slower on this CPU: worth it.",
    "parent": {"size_bytes": 2000, "perplexity": 20.0, "tokens_per_s": 14.0},
    "quantized": {"size_bytes": 820, "perplexity": 20.12, "tokens_per_s": 10.0},
    "top1_agreement": 0.988,
}


def child_folder(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A job output as the runner hands it to the store: weights, a .gguf and an adapter folder."""
    out = tmp_path / "out"
    shutil.copytree(tiny_model_dir, out)
    (out / "model-q8_0.gguf").write_bytes(b"GGUF" + bytes(60))
    adapter = out / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(b"not read here")
    (adapter / "train.py").write_text("print('never copied')")
    return out


def test_the_report_and_the_downloads_are_on_the_catalog_page(
    client_in: Client, user, store, tiny_model, tiny_model_dir: Path, tmp_path: Path
) -> None:
    store.import_folder(
        child_folder(tiny_model_dir, tmp_path), "tiny-child", parent="tiny-llama", method="int8_weight",
        extra={"job": 1, "quantize_report": REPORT, **owner_extra(user)},
    )  # fmt: skip
    assert not (store.path("tiny-child") / "adapter" / "train.py").exists(), "only safetensors and JSON"

    html = client_in.get(reverse("catalog:detail", args=["tiny-child"])).content.decode()
    assert REPORT["summary"] in html
    assert 'id="report-side-by-side"' in html
    assert 'data-chart="report"' in html
    assert reverse("catalog:download", args=["tiny-child", "gguf"]) in html
    assert reverse("catalog:download", args=["tiny-child", "adapter"]) in html

    gguf = client_in.get(reverse("catalog:download", args=["tiny-child", "gguf"]))
    assert gguf.status_code == 200
    assert b"".join(gguf.streaming_content).startswith(b"GGUF")
    assert 'filename="tiny-child.gguf"' in gguf["Content-Disposition"]

    adapter = client_in.get(reverse("catalog:download", args=["tiny-child", "adapter"]))
    assert adapter.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(adapter.content)).namelist()
    assert sorted(names) == [
        "tiny-child-adapter/adapter_config.json",
        "tiny-child-adapter/adapter_model.safetensors",
    ]


def test_only_files_a_model_has_can_be_downloaded(client_in: Client, tiny_model) -> None:
    html = client_in.get(reverse("catalog:detail", args=["tiny-llama"])).content.decode()
    assert 'id="downloads"' not in html
    for what in ("gguf", "adapter", "config.json", "..%2Fmeta.json"):
        assert client_in.get(f"/models/tiny-llama/download/{what}/").status_code == 404
    assert client_in.get(reverse("catalog:download", args=["no-such-model", "gguf"])).status_code == 404


def test_downloads_need_a_login(client: Client, tiny_model) -> None:
    response = client.get(reverse("catalog:download", args=["tiny-llama", "gguf"]))
    assert response.status_code == 302
    assert "/login" in response["Location"]
