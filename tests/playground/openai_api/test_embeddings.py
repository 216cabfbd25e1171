"""POST /v1/embeddings on the tiny encoder: pooled as the model says (mean when it says nothing),
normalized, as floats or base64, with usage; text models and token ids refused."""

from __future__ import annotations

import base64
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from llmcore.embeddings import embed, pool, read_pooling
from llmcore.loading import load_model
from tests.conftest import TINY_BERT, TINY_NAME
from tests.playground.openai_api.conftest import Api

pytestmark = pytest.mark.django_db


def test_embeddings_are_normalized_and_counted(api: Api) -> None:
    body = api.post("embeddings", {"model": TINY_BERT, "input": ["the quick brown fox", "hello"]}).json()
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1]
    for item in body["data"]:
        assert item["object"] == "embedding"
        assert len(item["embedding"]) == 32  # the tiny BERT's hidden size
        assert math.isclose(sum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-4)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 4
    one = api.post("embeddings", {"model": TINY_BERT, "input": "hello"}).json()
    assert np.allclose(
        one["data"][0]["embedding"], body["data"][1]["embedding"], atol=1e-5
    )  # no padding leak


def test_base64_is_the_float32_vector(api: Api) -> None:
    floats = api.post("embeddings", {"model": TINY_BERT, "input": "hello"}).json()["data"][0]["embedding"]
    packed = api.post("embeddings", {"model": TINY_BERT, "input": "hello", "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(packed.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vector, floats, atol=1e-6)


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"model": TINY_NAME}, "model", "encoder"),
        ({"input": [1, 2, 3]}, "input", "not token ids"),
        ({"input": ""}, "input", "empty"),
        ({"input": ["ok", 5]}, "input[1]", "must be a string"),
        ({"dimensions": 8}, "dimensions", "32 dimensions"),
        ({"input": "word " * 100}, None, "at most 40"),
    ],
)
def test_what_cannot_be_embedded_is_refused(api: Api, fields: dict, param: str | None, words: str) -> None:
    response = api.post("embeddings", {"model": TINY_BERT, "input": "hi", **fields})
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["param"] == param
    assert words in response.json()["error"]["message"]


def test_pooling_follows_the_models_config(store, tiny_bert, tmp_path: Path) -> None:
    folder = store.path(TINY_BERT)
    assert read_pooling(folder) == "mean"
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert read_pooling(folder) == "cls"
    loaded = load_model(store, TINY_BERT, device="cpu")
    cls = embed(loaded, ["the lazy dog"], "cls").vectors[0]
    mean = embed(loaded, ["the lazy dog"], "mean").vectors[0]
    assert not np.allclose(cls, mean)
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])  # the third position is padding
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]


def test_an_import_keeps_the_pooling_config(store, tiny_bert_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "st-model"
    shutil.copytree(tiny_bert_dir, source)
    (source / "1_Pooling").mkdir()
    (source / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    store.import_folder(source, "st-model", license="MIT")
    assert read_pooling(store.path("st-model")) == "max"
